-- A schema whose option takes anything: a wrong type is not refused.
local O = fw.schema{ports = {type = "ports", default = {22}}, extra = {type = "any"}, note = {type = "string", default = "x"}}
fw.register{hook = "input", fn = function(pkt) end}

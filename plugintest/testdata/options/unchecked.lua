-- Options read without a schema: nothing refuses a misspelled one.
local port = fw.option("port", 22)
fw.register{hook = "input", fn = function(pkt) if pkt.dport == port then return fw.DROP end end}

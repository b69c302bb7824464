-- policy: drop and reject TCP by destination port.
-- options: drop_ports (list), reject_ports (list)
local drop, reject = {}, {}
for _, p in ipairs(fw.options.drop_ports or {}) do drop[p] = true end
for _, p in ipairs(fw.options.reject_ports or {}) do reject[p] = true end

fw.register{hook = "forward", fn = function(pkt)
  if pkt.proto ~= "tcp" then return end
  if drop[pkt.dport] then return fw.DROP end
  if reject[pkt.dport] then return fw.REJECT end
end}

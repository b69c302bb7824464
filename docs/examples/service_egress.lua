-- service_egress: only the services listed may open connections to the
-- internal network; others are refused and logged with their cgroup.
-- The match keeps other traffic in the kernel; pkt.cgroup names the
-- sending socket's cgroup (systemd: "system.slice/NAME.service").

local internal = net.set(fw.option("internal", {"10.0.0.0/8"}, "table"))
local allowed = {}
for _, s in ipairs(fw.option("services", {"system.slice/nginx.service"}, "table")) do allowed[s] = true end

fw.register{hook = "output", match = {dst = internal, tcp_flags = "syn,!ack"}, fn = function(pkt)
  local cg = pkt.cgroup
  if cg and allowed[cg] then return fw.ACCEPT end
  log.warn("connection to the internal network refused", {cgroup = cg or "unknown", dst = pkt.dst, dport = pkt.dport})
  return fw.REJECT
end}

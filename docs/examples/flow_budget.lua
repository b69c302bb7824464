-- flow_budget: each UDP flow to the game servers may send `budget` bytes
-- per `window` seconds; the count lives in the flow's own table (pkt.flow),
-- both directions together, and goes with the flow.

local servers = net.set(fw.option("servers", {"203.0.113.0/24"}, "table"))
local budget = fw.option("budget", 100000, "number")
local window = fw.option("window", 10, "number")

fw.register{hook = "forward", match = {proto = "udp", dst = servers}, fn = function(pkt)
  local f = pkt.flow
  local now = time.now()
  if not f.since or now - f.since >= window then f.since, f.bytes = now, 0 end
  f.bytes = f.bytes + pkt.len
  if f.bytes > budget then return fw.DROP end
end}

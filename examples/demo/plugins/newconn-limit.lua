-- newconn-limit: each source may open `burst` new TCP connections to the
-- `ports` at once and `rate` more per second; beyond that its new
-- connections are dropped.
local ports = {}
for _, p in ipairs(fw.options.ports or {8080}) do ports[p] = true end
local bucket = state.bucket("newconn", {rate = fw.options.rate or 1, burst = fw.options.burst or 5})
local over = state.counter("newconn-over")

fw.register{hook = "forward", priority = fw.priority.filter - 10, fn = function(pkt)
  if pkt.proto == "tcp" and ports[pkt.dport] and pkt.tcp.syn and not pkt.tcp.ack and pkt.ct.state == "new" then
    if not bucket:take(pkt.src) then
      over:incr()
      return fw.DROP
    end
  end
end}

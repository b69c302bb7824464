-- ttl drops a second packet from a source within fw.options.ttl seconds,
-- and tags packets with the script's clock.
local ttl = fw.options.ttl or 10
local seen = state.map("seen")
local hits = state.counter("hits")

fw.register{hook = "input", fn = function(pkt)
  hits:incr()
  pkt:tag("now=" .. math.floor(time.now()))
  pkt:tag("hits=" .. hits:get())
  if seen:get(pkt.src) then
    return fw.DROP
  end
  seen:set(pkt.src, true, ttl)
end}

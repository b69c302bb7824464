-- voip_priority: a classifier at prerouting (raw, before conntrack) tags
-- SIP and RTP; a policy at forward lets tagged traffic through a busy
-- uplink and rate-limits the rest. The tag crosses from prerouting to
-- forward: on the kernel path it rides in a bit of marks.tags (`luafw
-- check` lists it), in `luafw test` and `luafw replay` along the path.

local rtp_lo, rtp_hi = fw.option("rtp_lo", 10000, "number"), fw.option("rtp_hi", 20000, "number")
local bulk = state.bucket("voip_priority.bulk", {rate = fw.option("bulk_rate", 1000, "number"), burst = 200})

fw.register{name = "classify", hook = "prerouting", priority = "raw", match = {proto = "udp"}, fn = function(pkt)
  if pkt.dport == 5060 or pkt.sport == 5060 or (pkt.dport >= rtp_lo and pkt.dport <= rtp_hi) then
    pkt:tag("voip")
  end
end}

fw.register{name = "uplink", hook = "forward", match = {oif = "wan*"}, fn = function(pkt)
  if pkt:tagged("voip") then return fw.ACCEPT end
  if not bulk:take("all") then return fw.DROP end
end}

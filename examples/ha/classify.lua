-- classify.lua: marks new TCP connections to the configured ports with the
-- offload bit, so the rest of each flow stays in the kernel (offload.mask)
-- on whichever router of the pair carries it: conntrackd replicates the
-- mark and the label to the peer.
local ports = {}
for _, p in ipairs(fw.options.ports or {}) do ports[p] = true end
local OFFLOAD = 0x100

fw.register{hook = "forward", fn = function(pkt)
  if pkt.proto ~= "tcp" then return end
  if pkt.tcp.syn and not pkt.tcp.ack and ports[pkt.dport] then
    pkt.ct:set_mark(OFFLOAD, OFFLOAD)
    pkt.ct:set_label(5)
    return
  end
  if ports[pkt.dport] or ports[pkt.sport] then
    -- A packet of a classified flow that still reached the queue.
    log.info("classified flow queued", {src = pkt.src, sport = pkt.sport, dport = pkt.dport})
  end
end}

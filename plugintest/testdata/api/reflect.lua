-- reflect tags each packet with what the plugin saw of it ("key=value"),
-- so that tests can check the engine's view of the packets they build.
-- The view is taken at the first hook; later hooks add only "at=HOOK"
-- (a packet carries at most 16 tags).
local function seen(pkt, key, value)
  pkt:tag(key .. "=" .. tostring(value))
end

fw.register{hook = {"prerouting", "input", "forward", "output", "postrouting"}, fn = function(pkt)
  seen(pkt, "at", pkt.hook)
  if pkt:tagged("viewed") then return end
  pkt:tag("viewed")
  seen(pkt, "family", pkt.family)
  seen(pkt, "proto", pkt.proto)
  seen(pkt, "src", pkt.src)
  seen(pkt, "dst", pkt.dst)
  seen(pkt, "ports", pkt.sport .. ">" .. pkt.dport)
  seen(pkt, "ct", tostring(pkt.ct.state) .. "/" .. tostring(pkt.ct.mark))
  seen(pkt, "dev", tostring(pkt.indev) .. ">" .. tostring(pkt.outdev))
  seen(pkt, "uid", pkt.uid)
  seen(pkt, "mark", pkt.mark)
  seen(pkt, "sizes", pkt.ttl .. "/" .. pkt.len .. "/" .. #pkt.payload)
  if pkt.proto == "tcp" then
    seen(pkt, "flags", pkt.tcp.flags)
  elseif pkt.proto == "icmp" or pkt.proto == "icmpv6" then
    seen(pkt, "icmp", pkt.icmp_type .. "/" .. pkt.icmp_code)
  end
end}

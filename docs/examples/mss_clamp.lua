-- mss_clamp lowers the MSS option of TCP SYNs that pass this router, as
-- iptables' TCPMSS target does, for IPv4 and IPv6: links with a smaller
-- MTU (PPPoE 1492, tunnels) then get segments that fit without ICMP
-- "fragmentation needed" making it back.
-- Options: mss = 1452 (the MSS to clamp to), hook = "forward".
local mss = fw.option("mss", 1452, "number")

fw.register{hook = fw.option("hook", "forward", "string"), priority = "mangle", fn = function(pkt)
  if pkt.proto == "tcp" and pkt.tcp.syn then
    pkt:clamp_mss(mss)
  end
end}

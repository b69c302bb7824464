-- watch asks for telnet packets to be captured, and lets them pass.
fw.register{name = "watch", hook = {"input", "forward"}, fn = function(pkt)
  if pkt.dport == 23 then pkt:capture() end
end}

-- deny drops telnet.
fw.register{hook = "input", fn = function(pkt)
  if pkt.dport == 23 then return fw.DROP end
end}

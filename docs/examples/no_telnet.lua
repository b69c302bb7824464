-- no_telnet drops incoming telnet connections.
fw.register{hook = "input", fn = function(pkt)
  if pkt.proto == "tcp" and pkt.dport == 23 then return fw.DROP end
end}

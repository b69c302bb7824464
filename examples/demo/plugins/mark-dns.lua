-- mark-dns: set packet mark 0x10 on DNS queries (kernel rules can match it).
fw.register{hook = "forward", priority = fw.priority.mangle, fn = function(pkt)
  if pkt.proto == "udp" and pkt.dport == 53 then pkt:set_mark(0x10, 0xff) end
end}

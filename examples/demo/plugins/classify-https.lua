-- classify-https: conntrack mark 0x1 on new HTTPS connections; the kernel
-- and later callbacks see it on every later packet of the connection.
fw.register{hook = "forward", fn = function(pkt)
  if pkt.proto == "tcp" and pkt.dport == 443 and pkt.ct.state == "new" then
    pkt.ct:set_mark(0x1)
  end
end}

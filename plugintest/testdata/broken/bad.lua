fw.register{hook = "input", fn = function(pkt)
  return fw.DROP
end

-- verdicts answers by destination port, to test what decisions look like.
local actions = {
  [1] = function() return fw.ACCEPT end,
  [2] = function() return fw.DROP end,
  [3] = function() return fw.STOP end,
  [4] = function() return fw.REJECT end,
  [5] = function() return fw.REPEAT end,
  [6] = function() error("boom") end,
  [7] = function() return "bogus" end,
  [8] = function(pkt) pkt:set_mark(0x10, 0xf0) end,
  [9] = function(pkt)
    pkt.ct:set_mark(0x100, 0xf00)
    pkt.ct:set_timeout(120)
    pkt.ct:set_label(1)
    pkt.ct:set_label(70)
  end,
  [10] = function(pkt) pkt:tag("ten") end,
  [11] = function(pkt) while true do end end,
}

fw.register{name = "by-port", hook = {"input", "forward", "output"}, priority = fw.priority.filter, fn = function(pkt)
  local a = actions[pkt.dport]
  if a then return a(pkt) end
end}

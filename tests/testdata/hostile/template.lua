-- A hostile plugin for tests/hostile_test.go. The test puts a case's
-- top-level code in the setup slot and its hostile code in the hostile
-- slot. Ordinary packets get ordinary decisions: port 23 is dropped, the
-- rest are marked 0x42 and accepted. Packets to the hostile port (option
-- port, default 6666) run the hostile code, which the sandbox must cut
-- off (budget) or refuse (an error): the packet then gets the plugin's
-- on_error verdict. A case whose code the sandbox may also finish
-- correctly checks the result itself and marks the packet 0x5afe.
local hostile_port = fw.options.port or 6666
--[[setup]]
fw.register{hook = "forward", fn = function(pkt)
  if pkt.dport == 23 then return fw.DROP end
  if pkt.dport ~= hostile_port then
    pkt:set_mark(0x42)
    return fw.ACCEPT
  end
  --[[hostile]]
  pkt:set_mark(0x5afe)
  return fw.ACCEPT
end}

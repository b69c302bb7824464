local h = harness("no_telnet.lua")

test("drops telnet", function()
  local d = h:run(packet.tcp{dport = 23, flags = "S"}, "input")
  expect_verdict(d, "drop")
  expect_eq(d.by, "no_telnet")
end)

test("lets ssh and udp/23 through", function()
  expect_verdict(h:run(packet.tcp{dport = 22, flags = "S"}, "input"), "accept")
  expect_verdict(h:run(packet.udp{dport = 23}, "input"), "accept")
end)

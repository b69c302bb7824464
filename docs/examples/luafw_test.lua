-- The whole configuration, as the daemon would load it.
local h = harness_config("luafw.yaml")

test("both plugins are in the input chain, in file order", function()
  local chains = h:chains()
  expect_eq(#chains, 2)
  expect_eq(chains[1].plugin, "no_telnet")
  expect_eq(chains[2].name, "ssh-guard")
end)

test("telnet is dropped before ssh_guard sees it", function()
  local d = h:send(packet.tcp{src = "10.0.0.1", dport = 23, flags = "S"}, "in")
  expect_verdict(d, "drop")
  expect_eq(d.by, "no_telnet")
  expect_eq(d.hooks, {"prerouting", "input"})
end)

test("a connection's later packets are established", function()
  local syn = packet.tcp{src = "10.0.0.1", dst = "10.0.0.2", sport = 40001, dport = 22, flags = "S"}
  expect_eq(h:send(syn, "in").ct_state, "new")
  local reply = packet.tcp{src = "10.0.0.2", dst = "10.0.0.1", sport = 22, dport = 40001, flags = "SA"}
  expect_eq(h:send(reply, "out").ct_state, "established")
end)

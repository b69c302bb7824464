-- The test API on fixtures: each test checks one promise of docs/plugins.md.

-- saw turns reflect.lua's tags into a table.
local function saw(d)
  local m = {}
  for _, t in ipairs(d.tags) do
    local k, v = t:match("^(.-)=(.*)$")
    if k then m[k] = v end
  end
  return m
end

local r = harness("reflect.lua")
local v = harness("verdicts.lua", nil, {on_error = "drop"})

test("tcp packet fields", function()
  local p = packet.tcp{src = "10.0.0.1", dst = "10.0.0.2", sport = 1234, dport = 22, flags = "SA", ttl = 9, payload = "hi"}
  local s = saw(r:run(p, "input"))
  expect_eq(s.at, "input")
  expect_eq(s.family, "4")
  expect_eq(s.proto, "tcp")
  expect_eq(s.src, "10.0.0.1")
  expect_eq(s.dst, "10.0.0.2")
  expect_eq(s.ports, "1234>22")
  expect_eq(s.flags, tostring(0x12))
  expect_eq(s.sizes, "9/42/2")
  expect_eq(s.ct, "nil/nil")
  expect_eq(s.uid, "nil")
  expect_eq(p.len, 42)
  expect_eq(p.kind, "tcp")
  expect_eq(p.dport, 22)
  expect_eq(#p.data, 42)
end)

test("defaults and IPv6", function()
  local s = saw(r:run(packet.udp{}, "input"))
  expect_eq(s.src, "192.0.2.1")
  expect_eq(s.dst, "198.51.100.1")
  expect_eq(s.ports, "40000>53")
  s = saw(r:run(packet.tcp{src = "2001:db8::5"}, "input"))
  expect_eq(s.family, "6")
  expect_eq(s.dst, "2001:db8::2")
  expect_eq(s.ports, "40000>80")
  s = saw(r:run(packet.icmp{type = 3, code = 1}, "input"))
  expect_eq(s.icmp, "3/1")
  s = saw(r:run(packet.icmpv6{}, "input"))
  expect_eq(s.proto, "icmpv6")
  expect_eq(s.icmp, "128/0")
end)

test("context fields", function()
  local p = packet.tcp{hook = "forward", indev = "eth0", outdev = "eth1", mark = 7, uid = 1000,
    ct = {state = "established", mark = 42}, tags = {"early"}}
  local d = r:run(p)
  local s = saw(d)
  expect_eq(d.hook, "forward")
  expect_eq(s.dev, "eth0>eth1")
  expect_eq(s.mark, "7")
  expect_eq(s.uid, "1000")
  expect_eq(s.ct, "established/42")
  expect_eq(d.tags[1], "early")
  expect_eq(d.ct_state, "established")
  expect_eq(d.ct_mark, 42)
end)

test("with makes changed copies", function()
  local p = packet.tcp{dport = 22}
  local q = p:with{dport = 23, indev = "lo"}
  expect_eq(p.dport, 22)
  expect_eq(saw(r:run(q, "input")).ports, "40000>23")
  expect_eq(saw(r:run(q, "input")).dev, "lo>nil")
  expect_error(function() p.dport = 1 end, "read%-only")
  local raw = packet.raw(p.data, {hook = "input"})
  expect_eq(raw.data, p.data)
  expect_eq(saw(r:run(raw)).ports, "40000>22")
  expect_eq(saw(r:run(p.data, "input")).ports, "40000>22")
end)

test("bad packets are errors", function()
  expect_error(function() packet.tcp{dprt = 22} end, 'unknown field "dprt"')
  expect_error(function() packet.tcp{flags = "SX"} end, "unknown flag")
  expect_error(function() packet.tcp{src = "10.0.0.1", dst = "::1"} end, "different address families")
  expect_error(function() packet.icmp{src = "::1"} end, "ICMP needs IPv4")
  expect_error(function() packet.udp{dport = 70000} end, "dport must be an integer")
  expect_error(function() packet.tcp{ct = {state = "bogus"}} end, "conntrack state")
  expect_error(function() r:run(packet.tcp{}) end, "no hook")
  expect_error(function() r:run(packet.tcp{}, "sideways") end, "unknown hook")
end)

test("verdicts", function()
  local names = {"accept", "drop", "stop", "reject", "repeat"}
  for port, name in ipairs(names) do
    local d = v:run(packet.tcp{dport = port}, "input")
    expect_verdict(d, name, "port " .. port)
    expect_eq(d.errors, 0)
  end
  expect_eq(v:run(packet.tcp{dport = 2}, "input").by, "verdicts")
  expect_eq(v:run(packet.tcp{dport = 2}, "input").callback, "by-port")
  expect_eq(v:run(packet.tcp{dport = 1}, "input").by, nil)
end)

test("errors get on_error", function()
  local d = v:run(packet.tcp{dport = 6}, "input")
  expect_verdict(d, "drop")
  expect_eq(d.errors, 1)
  d = v:run(packet.tcp{dport = 7}, "input")
  expect_verdict(d, "drop")
  expect_eq(d.errors, 1)
  local logs = v:logs()
  expect_eq(#logs, 2)
  expect_eq(logs[1].level, "warn")
  expect_eq(logs[1].plugin, "verdicts")
  expect_true(logs[1].reason:find("boom"), logs[1].reason)
  expect_eq(#v:logs(), 0)
end)

test("budget", function()
  local slow = harness("verdicts.lua", nil, {budget = 0.01, on_error = "reject"})
  local d = slow:run(packet.tcp{dport = 11}, "input")
  expect_verdict(d, "reject")
  expect_eq(d.errors, 1)
end)

test("marks, ct updates and tags", function()
  local d = v:run(packet.tcp{dport = 8, mark = 0x3}, "input")
  expect_eq(d.mark, 0x13)
  d = v:run(packet.tcp{dport = 9, ct = {mark = 0x1001}}, "input")
  expect_eq(d.ct_mark, 0x1101)
  expect_eq(d.ct_timeout, 120)
  expect_eq(d.ct_labels, {1, 70})
  d = v:run(packet.tcp{dport = 10}, "input")
  expect_eq(d.tags, {"ten"})
  expect_eq(d.ct_timeout, nil)
  expect_eq(d.ct_labels, {})
end)

test("send tracks connections", function()
  local h = harness("reflect.lua")
  local syn = packet.tcp{src = "10.0.0.1", dst = "10.0.1.1", sport = 5000, dport = 80, flags = "S", indev = "eth0", outdev = "eth1"}
  local d = h:send(syn, "forward")
  expect_eq(d.hooks, {"prerouting", "forward", "postrouting"})
  expect_eq(d.hook, "postrouting")
  expect_eq(d.ct_state, "new")
  expect_eq(d.path, "forward")
  local reply = packet.tcp{src = "10.0.1.1", dst = "10.0.0.1", sport = 80, dport = 5000, flags = "SA"}
  d = h:send(reply, "forward")
  expect_eq(d.ct_state, "established")
  -- tags are carried from hook to hook
  local hooks = {}
  for _, t in ipairs(h:send(syn:with{flags = "A"}, "forward").tags) do
    if t:match("^at=") then hooks[#hooks + 1] = t end
  end
  expect_eq(hooks, {"at=prerouting", "at=forward", "at=postrouting"})
  expect_eq(saw(d).ct, "established/0", "the flow's mark is known")
  expect_eq(h:send(packet.tcp{sport = 7, flags = ""}, "in").ct_state, "invalid", "no SYN: no new connection")
end)

test("send shows devices where the kernel knows them", function()
  local h = harness("reflect.lua")
  local devs = {}
  -- reflect.lua tags "dev=" once (the first hook's view): run hook by hook
  for _, hook in ipairs({"prerouting", "forward", "postrouting"}) do
    devs[hook] = saw(h:run(packet.tcp{indev = "eth0", outdev = "eth1"}, hook)).dev
  end
  expect_eq(devs.forward, "eth0>eth1")
  local d = h:send(packet.tcp{indev = "eth0", outdev = "eth1", uid = 5}, "in")
  expect_eq(saw(d).dev, "eth0>nil")
  expect_eq(saw(d).uid, "nil")
  d = h:send(packet.tcp{src = "10.9.9.9", indev = "eth0", outdev = "eth1", uid = 5}, "out")
  expect_eq(saw(d).dev, "nil>eth1")
  expect_eq(saw(d).uid, "5")
end)

test("send stops at drop and carries marks", function()
  local d = v:send(packet.tcp{dport = 2}, "forward")
  expect_verdict(d, "drop")
  expect_eq(d.hooks, {"prerouting", "forward"})
  expect_eq(d.by, "verdicts")
  d = v:send(packet.tcp{dport = 3}, "forward")
  expect_verdict(d, "accept")
  expect_eq(d.by, "verdicts")
  d = v:send(packet.tcp{dport = 9, sport = 999, flags = "S"}, "forward")
  expect_eq(d.ct_mark, 0x100)
  expect_eq(d.ct_labels, {1, 70})
  expect_eq(d.ct_timeout, 120)
end)

test("clock drives time.now and state TTLs", function()
  local h = harness("ttl.lua", {ttl = 30})
  expect_eq(clock.now(), 1735689600)
  local p = packet.udp{src = "10.0.0.9"}
  local d = h:run(p, "input")
  expect_verdict(d, "accept")
  expect_eq(saw(d).now, "1735689600")
  expect_verdict(h:run(p, "input"), "drop")
  clock.advance(29)
  expect_verdict(h:run(p, "input"), "drop")
  clock.advance(2)
  d = h:run(p, "input")
  expect_verdict(d, "accept")
  expect_eq(saw(d).now, "1735689631")
  expect_eq(saw(d).hits, "4")
  h:reset()
  expect_eq(saw(h:run(p, "input")).hits, "1", "reset starts with empty state")
end)

test("harness_config loads a whole configuration", function()
  local h = harness_config("all.yaml")
  local chains = h:chains()
  expect_eq(#chains, 4)
  expect_eq(chains[1], {hook = "input", priority = 0, plugin = "first", name = "first"})
  local d = h:run(packet.tcp{src = "10.1.1.1", dport = 6}, "input")
  expect_verdict(d, "drop")
  expect_eq(d.errors, 1)
  expect_verdict(h:run(packet.tcp{src = "10.1.1.2", dport = 1}, "input"), "accept")
  expect_verdict(h:run(packet.tcp{src = "10.1.1.2", dport = 1}, "input"), "drop")
  expect_eq(h:run(packet.tcp{src = "10.1.1.2", dport = 1}, "input").by, "first")
end)

test("load errors are catchable", function()
  local msg = expect_error(function() harness("missing.lua") end, "no such file")
  expect_true(msg:find("api_test.lua:%d+: harness:"), msg)
  expect_error(function() harness("ttl.lua", nil, {color = "red"}) end, 'unknown field "color"')
end)

test("deep equality", function()
  expect_eq({1, 2, {a = "x", b = {true}}}, {1, 2, {b = {true}, a = "x"}})
  expect_eq(nil, nil)
  expect_eq(1.5, 1.5)
  local same = expect_eq({a = 1}, {a = 1})
  expect_true(same)
end)

test("builders", function()
  local q = packet.dns_query("example.com", "AAAA", 7)
  expect_eq(#q, 12 + 13 + 4)
  expect_eq(q:byte(2), 7)
  expect_eq({q:byte(#q - 3, #q)}, {0, 28, 0, 1})
  local hello = packet.tls_client_hello("example.com", {alpn = {"h2"}})
  expect_eq(hello:byte(1), 22)
  expect_true(hello:find("example.com", 1, true))
  expect_true(not packet.tls_client_hello():find("example.com", 1, true))
  expect_error(function() packet.dns_query("a..b") end, "bad label")
end)

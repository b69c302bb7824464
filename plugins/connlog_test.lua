-- Tests of connlog.lua: luafw test plugins/connlog_test.lua

test("one line per new connection, with its fields", function()
	local h = harness("connlog.lua", {})
	local syn = packet.tcp{ src = "192.0.2.10", dst = "198.51.100.1", sport = 40000, dport = 443, flags = "S",
		indev = "eth1", outdev = "eth0" }
	local d = h:send(syn, "forward")
	expect_verdict(d, "accept", "connlog never changes a verdict")
	local logs = h:logs()
	expect_eq(#logs, 1)
	local l = logs[1]
	expect_eq(l.msg, "connection")
	expect_eq(l.level, "info")
	expect_eq(l.src, "192.0.2.10")
	expect_eq(l.dst, "198.51.100.1")
	expect_eq(l.sport, 40000)
	expect_eq(l.dport, 443)
	expect_eq(l.proto, "tcp")
	expect_eq(l.indev, "eth1")
	expect_eq(l.outdev, "eth0")
	expect_eq(l.hook, "forward")
	-- The reply and later packets are not new: no more lines.
	h:send(packet.tcp{ src = "198.51.100.1", dst = "192.0.2.10", sport = 443, dport = 40000, flags = "SA" }, "forward")
	h:send(syn:with{ flags = "A" }, "forward")
	expect_eq(#h:logs(), 0)
end)

test("each path logs once: in, out and forward", function()
	local h = harness("connlog.lua", {})
	h:send(packet.udp{ src = "192.0.2.10", dst = "198.51.100.1", sport = 5000, dport = 53, indev = "eth1" }, "in")
	h:send(packet.udp{ src = "192.0.2.10", dst = "198.51.100.1", sport = 5001, dport = 53, outdev = "eth0", uid = 1000 }, "out")
	h:send(packet.udp{ src = "192.0.2.10", dst = "198.51.100.1", sport = 5002, dport = 53 }, "forward")
	local logs = h:logs()
	expect_eq(#logs, 3)
	expect_eq(logs[1].hook, "input")
	expect_eq(logs[2].hook, "output")
	expect_eq(logs[2].uid, 1000, "local traffic has an owner")
	expect_eq(logs[3].hook, "forward")
	expect_eq(logs[3].uid, nil)
end)

test("ICMP and IPv6; protos filter", function()
	local h = harness("connlog.lua", {})
	h:send(packet.icmp{ src = "192.0.2.10", dst = "198.51.100.1", type = 8, id = 7 }, "forward")
	h:send(packet.icmpv6{ src = "2001:db8::1", dst = "2001:db8::2", type = 128, id = 8 }, "forward")
	local logs = h:logs()
	expect_eq(#logs, 2)
	expect_eq(logs[1].icmp_type, 8)
	expect_eq(logs[1].sport, nil, "no ports for icmp")
	expect_eq(logs[2].proto, "icmpv6")
	expect_eq(logs[2].src, "2001:db8::1")
	local tcponly = harness("connlog.lua", { protos = { "tcp" }, level = "warn", message = "new flow" }, { name = "tcponly" })
	tcponly:send(packet.udp{ dport = 53 }, "forward")
	tcponly:send(packet.tcp{ dport = 80, flags = "S" }, "forward")
	logs = tcponly:logs()
	expect_eq(#logs, 1)
	expect_eq(logs[1].msg, "new flow")
	expect_eq(logs[1].level, "warn")
end)

test("runs after filter plugins: dropped connections are not logged", function()
	local h = harness_config("testdata/filters.yaml")
	local function connlog_lines()
		local n = 0
		for _, l in ipairs(h:logs()) do
			if l.plugin == "connlog" then
				n = n + 1
			end
		end
		return n
	end
	connlog_lines()
	expect_verdict(h:send(packet.tcp{ src = "203.0.113.7", dst = "192.168.1.2", dport = 80, flags = "S" }, "forward"), "drop")
	expect_eq(connlog_lines(), 0, "blocklisted source")
	expect_verdict(h:send(packet.tcp{ src = "203.0.113.200", dst = "192.168.1.2", dport = 80, flags = "S" }, "forward"), "accept")
	expect_eq(connlog_lines(), 1, "an accepted connection")
end)

test("without conntrack only TCP SYNs are new connections", function()
	local h = harness("connlog.lua", {})
	h:run(packet.tcp{ dport = 22, flags = "S" }, "input")
	h:run(packet.tcp{ dport = 22, flags = "SA" }, "input")
	h:run(packet.tcp{ dport = 22, flags = "A" }, "input")
	h:run(packet.udp{ dport = 53 }, "input")
	expect_eq(#h:logs(), 1)
end)

test("odd packets do not error", function()
	local h = harness("connlog.lua", {})
	for _, p in ipairs({ packet.raw("", { ct = { state = "new" } }), packet.raw("\69\0\0\1", { ct = { state = "new" } }) }) do
		expect_eq(h:run(p, "forward").errors, 0)
	end
end)

test("bad options are load errors", function()
	expect_error(function() harness("connlog.lua", { level = "loud" }) end, "level")
end)

test("options are declared and checked", function()
	expect_options_checked("connlog.lua")
end)

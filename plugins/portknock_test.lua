-- Tests of portknock.lua: luafw test plugins/portknock_test.lua

local opts = { sequence = { 7000, 8000, 9000 }, protect = 22, open_for = 30, step_timeout = 10 }

local function tcp(src, dport, extra)
	local f = { src = src, dst = "198.51.100.1", sport = 40000, dport = dport, flags = "S", ct = { state = "new" } }
	for k, v in pairs(extra or {}) do
		f[k] = v
	end
	return packet.tcp(f)
end

local function knock_all(h, src, ports)
	for _, port in ipairs(ports) do
		expect_verdict(h:run(tcp(src, port), "input"), "drop", "knock on " .. port .. " is dropped")
	end
end

test("closed until the sequence is knocked, then open for a while", function()
	local h = harness("portknock.lua", opts)
	local d = h:run(tcp("192.0.2.1", 22), "input")
	expect_verdict(d, "drop")
	expect_eq(d.by, "portknock")
	knock_all(h, "192.0.2.1", { 7000, 8000, 9000 })
	expect_eq(h:logs()[1].msg, "port knock completed")
	expect_verdict(h:run(tcp("192.0.2.1", 22), "input"), "accept", "open after the knock")
	expect_verdict(h:run(tcp("192.0.2.2", 22), "input"), "drop", "only for the source that knocked")
	clock.advance(29)
	expect_verdict(h:run(tcp("192.0.2.1", 22), "input"), "accept", "still open at 29 s")
	local est = tcp("192.0.2.1", 22, { flags = "A", ct = { state = "established" } })
	clock.advance(2)
	expect_verdict(h:run(tcp("192.0.2.1", 22), "input"), "drop", "closed again after 30 s")
	expect_verdict(h:run(est, "input"), "accept", "a connection opened in the window stays up")
end)

test("wrong order resets; the first port restarts", function()
	local h = harness("portknock.lua", opts)
	knock_all(h, "192.0.2.3", { 7000, 9000, 8000, 9000 })
	expect_verdict(h:run(tcp("192.0.2.3", 22), "input"), "drop", "7000 9000 (reset) 8000 9000 does not open")
	knock_all(h, "192.0.2.3", { 7000, 8000, 7000, 8000, 9000 })
	expect_verdict(h:run(tcp("192.0.2.3", 22), "input"), "accept", "7000 8000 7000 (restart) 8000 9000 opens")
end)

test("a repeated knock is ignored, other ports do not count", function()
	local h = harness("portknock.lua", opts)
	knock_all(h, "192.0.2.4", { 7000, 7000 })
	expect_verdict(h:run(tcp("192.0.2.4", 80), "input"), "accept", "unrelated port passes")
	knock_all(h, "192.0.2.4", { 8000, 8000, 9000 })
	expect_verdict(h:run(tcp("192.0.2.4", 22), "input"), "accept")
end)

test("too slow between knocks starts over", function()
	local h = harness("portknock.lua", opts)
	knock_all(h, "192.0.2.5", { 7000, 8000 })
	clock.advance(11)
	knock_all(h, "192.0.2.5", { 9000 })
	expect_verdict(h:run(tcp("192.0.2.5", 22), "input"), "drop", "step timeout expired")
	knock_all(h, "192.0.2.5", { 7000 })
	clock.advance(9)
	knock_all(h, "192.0.2.5", { 8000 })
	clock.advance(9)
	knock_all(h, "192.0.2.5", { 9000 })
	expect_verdict(h:run(tcp("192.0.2.5", 22), "input"), "accept", "9 s between knocks is in time")
end)

test("only SYNs knock; established traffic to the protected port passes", function()
	local h = harness("portknock.lua", opts)
	for _, port in ipairs({ 7000, 8000, 9000 }) do
		expect_verdict(h:run(tcp("192.0.2.6", port, { flags = "A", ct = { state = "established" } }), "input"), "accept")
	end
	expect_verdict(h:run(tcp("192.0.2.6", 22), "input"), "drop", "ACKs are not knocks")
	expect_verdict(h:run(tcp("192.0.2.6", 22, { flags = "PA", ct = { state = "established" } }), "input"), "accept")
	expect_verdict(h:run(packet.udp{ src = "192.0.2.6", dst = "198.51.100.1", dport = 22, ct = { state = "new" } }, "input"),
		"accept", "udp/22 is not protected")
end)

test("mixed protocols, several protected ports, IPv6, reject", function()
	local h = harness("portknock.lua", { sequence = { "5000/udp", 6000 }, protect = { 22, 443 }, action = "reject", drop_knocks = false })
	local src = "2001:db8::7"
	local function knock(p)
		return h:run(p, "input")
	end
	expect_verdict(knock(packet.tcp{ src = src, dst = "2001:db8::1", dport = 5000, flags = "S", ct = { state = "new" } }), "accept",
		"tcp/5000 is not a knock port; knocks are not dropped either")
	expect_verdict(knock(packet.udp{ src = src, dst = "2001:db8::1", dport = 5000, ct = { state = "new" } }), "accept", "udp knock, not dropped")
	expect_verdict(knock(packet.tcp{ src = src, dst = "2001:db8::1", dport = 6000, flags = "S", ct = { state = "new" } }), "accept")
	for _, port in ipairs({ 22, 443 }) do
		expect_verdict(h:run(packet.tcp{ src = src, dst = "2001:db8::1", dport = port, flags = "S", ct = { state = "new" } }, "input"), "accept")
		expect_verdict(h:run(packet.tcp{ src = "2001:db8::8", dst = "2001:db8::1", dport = port, flags = "S", ct = { state = "new" } }, "input"), "reject")
	end
end)

test("allow list and the forward hook", function()
	local h = harness("portknock.lua", { protect = 22, allow = { "192.0.2.0/30" }, hooks = { "forward" } })
	expect_verdict(h:run(tcp("192.0.2.2", 22), "forward"), "accept", "allowed")
	expect_verdict(h:run(tcp("192.0.2.9", 22), "forward"), "drop")
	expect_verdict(h:run(tcp("192.0.2.9", 22), "input"), "accept", "not on input")
end)

test("default sequence warns; malformed packets pass", function()
	local h = harness("portknock.lua", {})
	for _, p in ipairs({ packet.raw(""), packet.raw("\96\0\0\0"), packet.icmp{ type = 8 },
		packet.tcp{ src = "2001:db8::1", dst = "2001:db8::2", dport = 7000, flags = "S" } }) do
		local d = h:run(p, "input")
		expect_eq(d.errors, 0, tostring(p))
	end
end)

test("bad options are load errors", function()
	expect_error(function() harness("portknock.lua", { sequence = { 7000, "x" } }) end, "not a port")
	expect_error(function() harness("portknock.lua", { sequence = { 22 }, protect = 22 }) end, "both protected and a knock port")
	expect_error(function() harness("portknock.lua", { sequence = { "7000/icmp" } }) end, "tcp or udp")
	expect_error(function() harness("portknock.lua", { sequence = {} }) end, "empty")
end)

test("options are declared and checked", function()
	expect_options_checked("portknock.lua")
end)

-- Tests of ratelimit.lua: luafw test plugins/ratelimit_test.lua

local function syn(src, sport, extra)
	local f = { src = src, dst = "198.51.100.1", sport = sport, dport = 22, flags = "S", ct = { state = "new" } }
	for k, v in pairs(extra or {}) do
		f[k] = v
	end
	return packet.tcp(f)
end

test("burst passes, then the source is banned", function()
	local h = harness("ratelimit.lua", { rate = 1, burst = 3, ban = 60 })
	for i = 1, 3 do
		expect_verdict(h:run(syn("192.0.2.7", 40000 + i), "input"), "accept", "attempt " .. i)
	end
	local d = h:run(syn("192.0.2.7", 40004), "input")
	expect_verdict(d, "drop")
	expect_eq(d.by, "ratelimit")
	local logs = h:logs()
	expect_eq(#logs, 1)
	expect_eq(logs[1].msg, "source banned")
	expect_eq(logs[1].src, "192.0.2.7")
	-- Banned: even after the bucket refilled, until the ban expires.
	clock.advance(30)
	expect_verdict(h:run(syn("192.0.2.7", 40005), "input"), "drop", "still banned after 30 s")
	-- Other sources are not affected.
	expect_verdict(h:run(syn("192.0.2.8", 40000), "input"), "accept", "another source")
	clock.advance(31)
	expect_verdict(h:run(syn("192.0.2.7", 40006), "input"), "accept", "ban expired after 60 s")
end)

test("tokens come back at the rate", function()
	local h = harness("ratelimit.lua", { rate = "1/min", burst = 1, ban = 0 })
	expect_verdict(h:run(syn("192.0.2.9", 1), "input"), "accept")
	expect_verdict(h:run(syn("192.0.2.9", 2), "input"), "drop", "no token, no ban: only this attempt is dropped")
	clock.advance(30)
	expect_verdict(h:run(syn("192.0.2.9", 3), "input"), "drop", "half a token after 30 s")
	clock.advance(30)
	expect_verdict(h:run(syn("192.0.2.9", 4), "input"), "accept", "a token after 60 s")
	expect_eq(#h:logs(), 0, "no ban, no log line")
end)

test("established connections and other ports are untouched", function()
	local h = harness("ratelimit.lua", { rate = 1, burst = 1, ban = 600 })
	h:run(syn("192.0.2.10", 1), "input")
	expect_verdict(h:run(syn("192.0.2.10", 2), "input"), "drop", "banned")
	local est = packet.tcp{ src = "192.0.2.10", dst = "198.51.100.1", sport = 1, dport = 22, flags = "PA",
		payload = "SSH-2.0-x", ct = { state = "established" } }
	expect_verdict(h:run(est, "input"), "accept", "established connection survives the ban")
	expect_verdict(h:run(syn("192.0.2.10", 3, { dport = 80 }), "input"), "accept", "other port (scope = ports)")
	expect_verdict(h:run(packet.udp{ src = "192.0.2.10", dst = "198.51.100.1", sport = 5, dport = 22, ct = { state = "new" } }, "input"),
		"accept", "udp is not limited with proto = tcp")
end)

test("scope all bans every packet of the source", function()
	local h = harness("ratelimit.lua", { rate = 1, burst = 1, ban = 600, scope = "all" })
	h:run(syn("192.0.2.11", 1), "input")
	h:run(syn("192.0.2.11", 2), "input")
	expect_verdict(h:run(syn("192.0.2.11", 3, { dport = 80 }), "input"), "drop", "port 80 too")
	expect_verdict(h:run(packet.icmp{ src = "192.0.2.11", dst = "198.51.100.1", type = 8 }, "input"), "drop", "icmp too")
end)

test("without conntrack a SYN without ACK is a new connection", function()
	local h = harness("ratelimit.lua", { rate = 1, burst = 1, ban = 600 })
	local bare = packet.tcp{ src = "192.0.2.12", dst = "198.51.100.1", sport = 1, dport = 22, flags = "S" }
	expect_verdict(h:run(bare, "input"), "accept")
	expect_verdict(h:run(bare:with{ flags = "A" }, "input"), "accept", "an ACK is not a new connection")
	expect_verdict(h:run(bare:with{ flags = "SA" }, "input"), "accept", "a SYN/ACK is not a new connection")
	expect_verdict(h:run(bare:with{ sport = 2 }, "input"), "drop", "second SYN: over the limit")
end)

test("IPv6 sources share a bucket per /64", function()
	local h = harness("ratelimit.lua", { rate = 1, burst = 2, ban = 600 })
	local function syn6(src, sport)
		return packet.tcp{ src = src, dst = "2001:db8::100", sport = sport, dport = 22, flags = "S", ct = { state = "new" } }
	end
	expect_verdict(h:run(syn6("2001:db8:1:2::1", 1), "input"), "accept")
	expect_verdict(h:run(syn6("2001:db8:1:2:ffff::9", 2), "input"), "accept")
	expect_verdict(h:run(syn6("2001:db8:1:2::77", 3), "input"), "drop", "third address of the same /64")
	expect_eq(h:logs()[1].key, "2001:db8:1:2::/64")
	expect_verdict(h:run(syn6("2001:db8:1:3::1", 4), "input"), "accept", "the next /64 has its own bucket")
end)

test("v6_prefix 128 limits per address; 56 per /56", function()
	local h = harness("ratelimit.lua", { rate = 1, burst = 1, ban = 600, v6_prefix = 128 })
	local p = packet.tcp{ src = "2001:db8::1", dst = "2001:db8::100", sport = 1, dport = 22, flags = "S", ct = { state = "new" } }
	expect_verdict(h:run(p, "input"), "accept")
	expect_verdict(h:run(p:with{ src = "2001:db8::2" }, "input"), "accept", "another address")
	local h56 = harness("ratelimit.lua", { rate = 1, burst = 1, ban = 600, v6_prefix = 56 }, { name = "rl56" })
	expect_verdict(h56:run(p:with{ src = "2001:db8:0:1200::1" }, "input"), "accept")
	expect_verdict(h56:run(p:with{ src = "2001:db8:0:12ff::1" }, "input"), "drop", "same /56")
	expect_eq(h56:logs()[1].key, "2001:db8:0:1200::/56")
end)

test("allow list, several ports, reject, forward hook", function()
	local h = harness("ratelimit.lua", { rate = 1, burst = 1, ports = { 22, 2222 }, allow = { "192.0.2.0/28" },
		action = "reject", hooks = { "input", "forward" } })
	for i = 1, 5 do
		expect_verdict(h:run(syn("192.0.2.5", i), "forward"), "accept", "allowed source " .. i)
	end
	expect_verdict(h:run(syn("192.0.2.100", 1, { dport = 2222 }), "forward"), "accept")
	expect_verdict(h:run(syn("192.0.2.100", 2, { dport = 22 }), "forward"), "reject", "ports share one bucket")
	expect_verdict(h:run(syn("192.0.2.100", 3), "output"), "accept", "not registered on output")
end)

test("hostile and odd packets never error", function()
	local h = harness("ratelimit.lua", {})
	for _, p in ipairs({
		packet.raw(""),
		packet.raw("\69\0\0"),
		packet.raw(string.rep("\255", 60)),
		packet.icmpv6{ src = "2001:db8::1", dst = "2001:db8::2", type = 128 },
		packet.tcp{ src = "2001:db8::1", dst = "2001:db8::2", dport = 22, flags = "S" },
		packet.udp{ src = "::ffff:192.0.2.1", dst = "::ffff:198.51.100.1", dport = 22 },
	}) do
		local d = h:run(p, "input")
		expect_eq(d.errors, 0, tostring(p))
	end
end)

test("bad options are load errors", function()
	expect_error(function() harness("ratelimit.lua", { rate = "fast" }) end, "rate")
	expect_error(function() harness("ratelimit.lua", { scope = "everything" }) end, "scope")
	expect_error(function() harness("ratelimit.lua", { v6_prefix = 63 }) end, "v6_prefix")
	expect_error(function() harness("ratelimit.lua", { action = "explode" }) end, "action")
	-- The mistakes of issue 20: each names the option.
	expect_error(function() harness("ratelimit.lua", { port = { 2222 } }) end, 'option "port" is unknown %(did you mean ports%?%)')
	expect_error(function() harness("ratelimit.lua", { rat = "5/min" }) end, 'option "rat" is unknown %(did you mean rate%?%)')
	expect_error(function() harness("ratelimit.lua", { ports = { "abc" } }) end, 'option ports: want a port')
end)

test("state = cluster limits the same way (alone, the cluster is this node)", function()
	local h = harness("ratelimit.lua", { rate = 1, burst = 2, ban = 60, state = "cluster" })
	expect_verdict(h:run(syn("192.0.2.9", 41001), "input"), "accept")
	expect_verdict(h:run(syn("192.0.2.9", 41002), "input"), "accept")
	expect_verdict(h:run(syn("192.0.2.9", 41003), "input"), "drop")
end)

test("state must be local or cluster", function()
	expect_error(function() harness("ratelimit.lua", { state = "global" }) end, 'option state: "global" is not one of local, cluster')
end)

test("options are declared and checked", function()
	expect_options_checked("ratelimit.lua")
end)

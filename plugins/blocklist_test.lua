-- Tests of blocklist.lua: luafw test plugins/blocklist_test.lua

local sample = { files = { "lists/blocklist.sample.txt" } }

local function from(src, extra)
	local dst = "192.0.2.50"
	if src:find(":", 1, true) then
		dst = "2001:db8::50"
	end
	local f = { src = src, dst = dst, sport = 40000, dport = 80, flags = "S" }
	for k, v in pairs(extra or {}) do
		f[k] = v
	end
	return packet.tcp(f)
end

test("sources in the list file are dropped", function()
	local h = harness("blocklist.lua", sample)
	for _, src in ipairs({ "203.0.113.0", "203.0.113.7", "203.0.113.127", "198.51.100.66", "198.51.100.130", "2001:db8:bad::1", "2001:db8::dead:beef" }) do
		local d = h:run(from(src), "input")
		expect_verdict(d, "drop", src)
		expect_eq(d.by, "blocklist", src)
	end
	for _, src in ipairs({ "203.0.113.128", "198.51.100.65", "198.51.100.67", "198.51.100.192", "2001:db8:bae::1", "2001:db8::dead:bef0", "192.0.2.1" }) do
		expect_verdict(h:run(from(src), "input"), "accept", src)
	end
end)

test("inline entries and files together; forward hook; every protocol", function()
	local h = harness("blocklist.lua", { files = "lists/blocklist.sample.txt", entries = { "192.0.2.128/25", "2001:db8:ffff::1" } })
	expect_verdict(h:run(from("192.0.2.200"), "forward"), "drop", "inline entry")
	expect_verdict(h:run(from("203.0.113.1"), "forward"), "drop", "file entry")
	expect_verdict(h:run(packet.udp{ src = "2001:db8:ffff::1", dst = "2001:db8::2", dport = 53 }, "forward"), "drop", "IPv6 inline, udp")
	expect_verdict(h:run(packet.icmp{ src = "192.0.2.129", dst = "198.51.100.1", type = 8 }, "input"), "drop", "icmp")
	expect_verdict(h:run(from("192.0.2.127"), "forward"), "accept", "just below the inline /25")
	expect_verdict(h:run(from("192.0.2.200"), "output"), "accept", "output is not a default hook")
end)

test("match dst and both; reject", function()
	local dst = harness("blocklist.lua", { entries = { "198.51.100.0/24" }, match = "dst", action = "reject", hooks = { "output", "forward" } })
	local out = packet.tcp{ src = "192.0.2.1", dst = "198.51.100.9", dport = 443, flags = "S" }
	expect_verdict(dst:run(out, "output"), "reject", "to a listed destination")
	expect_verdict(dst:run(packet.tcp{ src = "198.51.100.9", dst = "192.0.2.1", dport = 443, flags = "S" }, "forward"), "accept",
		"from it: match = dst only")
	local both = harness("blocklist.lua", { entries = { "198.51.100.0/24" }, match = "both" }, { name = "both" })
	expect_verdict(both:run(out, "forward"), "drop", "dst listed")
	expect_verdict(both:run(packet.tcp{ src = "198.51.100.9", dst = "192.0.2.1", dport = 443, flags = "S" }, "forward"), "drop", "src listed")
end)

test("IPv4-mapped IPv6 addresses match their IPv4 entry", function()
	local h = harness("blocklist.lua", { entries = { "192.0.2.0/24" } })
	expect_verdict(h:run(packet.udp{ src = "::ffff:192.0.2.9", dst = "::ffff:198.51.100.1", dport = 53 }, "input"), "drop")
end)

test("logging is off by default and can be turned on", function()
	local h = harness("blocklist.lua", { entries = { "192.0.2.0/24" } })
	h:run(from("192.0.2.1"), "input")
	expect_eq(#h:logs(), 0)
	local hl = harness("blocklist.lua", { entries = { "192.0.2.0/24" }, log = true }, { name = "loud" })
	hl:run(from("192.0.2.1"), "input")
	local logs = hl:logs()
	expect_eq(#logs, 1)
	expect_eq(logs[1].addr, "192.0.2.1")
end)

test("an empty list warns and passes everything", function()
	local h = harness("blocklist.lua", {})
	expect_verdict(h:run(from("203.0.113.7"), "input"), "accept")
end)

test("malformed packets pass without errors", function()
	local h = harness("blocklist.lua", sample)
	for _, p in ipairs({ packet.raw(""), packet.raw("\69"), packet.raw(string.rep("\0", 40)), packet.raw("\96" .. string.rep("\0", 10)) }) do
		local d = h:run(p, "input")
		expect_verdict(d, "accept", tostring(p))
		expect_eq(d.errors, 0, tostring(p))
	end
end)

test("bad options are load errors", function()
	expect_error(function() harness("blocklist.lua", { files = { "lists/does-not-exist.txt" } }) end, "does%-not%-exist")
	expect_error(function() harness("blocklist.lua", { entries = { "not-an-address" } }) end, "not%-an%-address")
	expect_error(function() harness("blocklist.lua", { entries = { "192.0.2.1" }, match = "sideways" }) end, "match")
	expect_error(function() harness("blocklist.lua", { entries = { "192.0.2.1" }, action = "ignore" }) end, "action")
end)

test("files outside the plugin's directory need allow_dirs", function()
	-- The repository's README is outside plugins/: refused, with the same
	-- message as a missing file.
	expect_error(function() harness("blocklist.lua", { files = "../README.md" }) end,
		'"../README.md" is not a readable file in the plugin\'s allowed directories')
	-- A test may allow only directories inside its own tree.
	expect_error(function() harness("blocklist.lua", { files = "../README.md" }, { allow_dirs = { ".." } }) end,
		"not inside the test's directory tree")
	-- A file inside is read (and is no CIDR list: a bad entry, with its
	-- line and not its content).
	local err = expect_error(function() harness("blocklist.lua", { files = "README.md" }) end,
		"README%.md:%d+: bad entry")
	expect_true(not err:find("Each plugin", 1, true), "the error quotes the file's content: " .. err)
end)

test("options are declared and checked", function()
	expect_options_checked("blocklist.lua")
end)

-- Tests of classify.lua: luafw test plugins/classify_test.lua

local rules = {
	{ name = "voip", proto = "udp", dport = "10000-20000", mark = 1 },
	{ name = "ssh", proto = "tcp", dport = 22, mark = 2 },
	{ name = "web", proto = 6, dport = { 80, 443 }, mark = 3, offload = false },
	{ name = "lan6", family = 6, src = { "2001:db8:1::/48" }, mark = 4 },
	{ name = "vpn", indev = "wg+", mark = 5 },
	{ name = "backup", dst = "198.51.100.0/24", sport = { 873, "6000-6001" }, mark = 6 },
}
local opts = { rules = rules, mask = 0x0f, offload_mark = 0x100 }

local function new(f)
	f.ct = f.ct or { state = "new" }
	f.src = f.src or "192.0.2.10"
	f.dst = f.dst or "203.0.113.5"
	return f
end

test("the first matching rule sets ct mark, packet mark and tag", function()
	local h = harness("classify.lua", opts)
	local cases = {
		{ packet.udp(new{ dport = 10000 }), 1, "voip" },
		{ packet.udp(new{ dport = 20000 }), 1, "voip" },
		{ packet.tcp(new{ dport = 22, flags = "S" }), 2, "ssh" },
		{ packet.tcp(new{ dport = 443, flags = "S" }), 3, "web" },
		{ packet.tcp(new{ src = "2001:db8:1::5", dst = "2001:db8:9::1", dport = 443, flags = "S" }), 3, "web" },
		{ packet.udp(new{ src = "2001:db8:1::5", dst = "2001:db8:9::1", dport = 53 }), 4, "lan6" },
		{ packet.icmp(new{ type = 8, indev = "wg0" }), 5, "vpn" },
		{ packet.tcp(new{ dst = "198.51.100.7", sport = 6001, dport = 5555, flags = "S" }), 6, "backup" },
	}
	for i, c in ipairs(cases) do
		local d = h:run(c[1], "prerouting")
		expect_verdict(d, "accept", "case " .. i)
		expect_eq(d.mark, c[2], "packet mark, case " .. i)
		local ct = c[2] + 0x100
		if c[3] == "web" then
			ct = c[2] -- offload = false
		end
		expect_eq(d.ct_mark, ct, "ct mark, case " .. i)
		expect_eq(d.tags, { c[3] }, "tag, case " .. i)
	end
end)

test("no rule matches: nothing changes", function()
	local h = harness("classify.lua", opts)
	for i, p in ipairs({
		packet.udp(new{ dport = 9999 }),
		packet.udp(new{ dport = 20001 }),
		packet.tcp(new{ dport = 10500, flags = "S" }), -- voip range, but tcp
		packet.icmp(new{ type = 8, indev = "eth0" }),
		packet.icmp(new{ type = 8 }), -- no interface known
		packet.tcp(new{ dst = "198.51.100.7", sport = 6002, dport = 5555, flags = "S" }),
	}) do
		local d = h:run(p:with{ mark = 0x80, ct = { state = "new", mark = 0x40 } }, "prerouting")
		expect_eq(d.mark, 0x80, "case " .. i)
		expect_eq(d.ct_mark, 0x40, "case " .. i)
		expect_eq(d.tags, {}, "case " .. i)
	end
end)

test("only the mask's bits change", function()
	local h = harness("classify.lua", opts)
	local d = h:run(packet.tcp(new{ dport = 22, flags = "S", mark = 0xf0f, ct = { state = "new", mark = 0xf00f } }), "prerouting")
	expect_eq(d.mark, 0xf02)
	expect_eq(d.ct_mark, 0xf102, "class 2 in the low bits, offload bit 0x100 set")
end)

test("later packets of the connection keep the class, not re-run", function()
	local h = harness("classify.lua", opts)
	local syn = packet.tcp{ src = "192.0.2.10", dst = "203.0.113.5", sport = 40000, dport = 22, flags = "S" }
	local d = h:send(syn, "forward")
	expect_eq(d.ct_state, "new")
	expect_eq(d.ct_mark, 0x102)
	expect_eq(d.mark, 2)
	local reply = packet.tcp{ src = "203.0.113.5", dst = "192.0.2.10", sport = 22, dport = 40000, flags = "SA" }
	d = h:send(reply, "forward")
	expect_eq(d.ct_state, "established")
	expect_eq(d.ct_mark, 0x102, "the connection keeps its class")
	expect_eq(d.mark, 0, "no restore: the kernel copies the class (CONNMARK --restore-mark)")
	expect_eq(d.tags, {})
end)

test("restore copies the class onto later packets", function()
	local h = harness("classify.lua", { rules = rules, mask = 0x0f, offload_mark = 0x100, restore = true })
	local d = h:run(packet.tcp{ dport = 22, flags = "A", mark = 0x70, ct = { state = "established", mark = 0x102 } }, "prerouting")
	expect_eq(d.mark, 0x72, "the class bits only (0x102 and mask 0x0f)")
end)

test("packet_mark = false leaves the packet mark; default class; output hook", function()
	local h = harness("classify.lua", { rules = rules, mask = 0x0f, packet_mark = false, default = 9 })
	local d = h:run(packet.tcp(new{ dport = 22, flags = "S" }), "output")
	expect_eq(d.mark, 0)
	expect_eq(d.ct_mark, 2, "no offload_mark: just the class")
	d = h:run(packet.udp(new{ dport = 7 }), "prerouting")
	expect_eq(d.ct_mark, 9, "default class")
	expect_eq(d.tags, {})
	expect_eq(#h:chains(), 2, "prerouting and output")
end)

test("without conntrack every packet gets the packet mark", function()
	local h = harness("classify.lua", opts)
	local p = packet.udp{ dport = 12000 }
	local d = h:run(p, "prerouting")
	expect_eq(d.mark, 1)
	expect_eq(d.ct_mark, 0, "no connection to mark")
	d = h:run(p, "prerouting")
	expect_eq(d.mark, 1, "again for the next packet")
end)

test("malformed packets pass without errors", function()
	local h = harness("classify.lua", opts)
	for _, p in ipairs({ packet.raw("", { ct = { state = "new" } }), packet.raw("\69\0\0\20", { ct = { state = "invalid" } }),
		packet.raw(string.rep("\96", 50), { ct = { state = "new" } }) }) do
		local d = h:run(p, "prerouting")
		expect_verdict(d, "accept")
		expect_eq(d.errors, 0)
	end
end)

test("bad rules are load errors", function()
	expect_error(function() harness("classify.lua", { rules = { { proto = "tcp" } } }) end, "mark is missing")
	expect_error(function() harness("classify.lua", { rules = { { mark = 0x10 } }, mask = 0x0f }) end, "outside mask")
	expect_error(function() harness("classify.lua", { rules = { { mark = 1, dprot = 22 } } }) end, "unknown field dprot")
	expect_error(function() harness("classify.lua", { rules = { { mark = 1, dport = "9-3" } } }) end, "bad port")
	expect_error(function() harness("classify.lua", { rules = { { mark = 1, src = "nope" } } }) end, "nope")
	expect_error(function() harness("classify.lua", { rules = {}, offload_mark = 0x1 }) end, "outside mask")
end)

test("options are declared and checked", function()
	expect_options_checked("classify.lua")
end)

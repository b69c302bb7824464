-- Tests of sni.lua (and the tls module): luafw test plugins/sni_test.lua

local opts = { names = { "blocked.example", "*.Ads.Example." }, allow = { "ok.blocked.example" } }

-- Each hello is a connection of its own (a new source port) unless extra
-- names one: the plugin judges a connection once.
local next_port = 40000
local function hello(name, extra)
	next_port = next_port + 1
	local f = { src = "192.0.2.10", dst = "198.51.100.80", sport = next_port, dport = 443, flags = "PA",
		payload = packet.tls_client_hello(name), ct = { state = "established" } }
	for k, v in pairs(extra or {}) do
		f[k] = v
	end
	return packet.tcp(f)
end

test("listed names and subdomains are rejected, others pass", function()
	local h = harness("sni.lua", opts)
	for _, name in ipairs({ "blocked.example", "www.blocked.example", "WWW.Blocked.Example", "ads.example", "x.y.ads.example" }) do
		local d = h:run(hello(name), "forward")
		expect_verdict(d, "reject", name)
		expect_eq(d.by, "sni", name)
	end
	for _, name in ipairs({ "example", "notblocked.example", "blocked.example.org", "ok.blocked.example", "a.ok.blocked.example" }) do
		expect_verdict(h:run(hello(name), "forward"), "accept", name)
	end
	local logs = h:logs()
	expect_eq(#logs, 5)
	expect_eq(logs[3].sni, "www.blocked.example")
	expect_eq(logs[3].rule, "blocked.example")
end)

test("drop action, output hook, other ports", function()
	local h = harness("sni.lua", { names = { "blocked.example" }, action = "drop", ports = { 443, 8443 } })
	expect_verdict(h:run(hello("blocked.example"), "output"), "drop")
	expect_verdict(h:run(hello("blocked.example", { dport = 8443 }), "forward"), "drop", "port 8443")
	expect_verdict(h:run(hello("blocked.example", { dport = 9443 }), "forward"), "accept", "port 9443 not listed")
	expect_verdict(h:run(hello("blocked.example"), "input"), "accept", "input is not a default hook")
end)

test("marks set the packet and connection mark within the mask", function()
	local h = harness("sni.lua", { marks = { ["video.example"] = 0x10, ["backup.example"] = 0x20 } })
	local d = h:run(hello("cdn.video.example", { mark = 0x3, ct = { state = "established", mark = 0x103 } }), "forward")
	expect_verdict(d, "accept")
	expect_eq(d.mark, 0x13, "packet mark: 0x10 added, other bits kept")
	expect_eq(d.ct_mark, 0x113, "ct mark: 0x10 added, other bits kept")
	d = h:run(hello("backup.example", { mark = 0x10, ct = { state = "established", mark = 0x10 } }), "forward")
	expect_eq(d.mark, 0x20, "0x10 cleared: the default mask covers every mark's bits")
	expect_eq(d.ct_mark, 0x20)
	d = h:run(hello("other.example", { mark = 0x10 }), "forward")
	expect_eq(d.mark, 0x10, "no match, no change")
	local m = harness("sni.lua", { marks = { ["video.example"] = 0x10 }, mask = 0xf0 }, { name = "masked" })
	d = m:run(hello("video.example", { mark = 0xff }), "forward")
	expect_eq(d.mark, 0x1f)
end)

test("a blocked name wins over a mark", function()
	local h = harness("sni.lua", { names = { "x.example" }, marks = { ["x.example"] = 1 } })
	expect_verdict(h:run(hello("x.example"), "forward"), "reject")
end)

test("a hello split over two segments is read once complete", function()
	local h = harness("sni.lua", opts)
	local full = packet.tls_client_hello("www.blocked.example")
	local function seg(sport, off, data)
		return hello("", { sport = sport, seq = 1001 + off, payload = data })
	end
	local function syn(sport)
		return packet.tcp{ src = "192.0.2.10", dst = "198.51.100.80", sport = sport, dport = 443, flags = "S", seq = 1000 }
	end
	expect_verdict(h:run(syn(50000), "forward"), "accept")
	expect_verdict(h:run(seg(50000, 0, full:sub(1, 60)), "forward"), "accept", "first segment: the name is not in it")
	expect_verdict(h:run(seg(50000, 60, full:sub(61)), "forward"), "reject", "second segment completes it")
	expect_verdict(h:run(seg(50000, 60, full:sub(61)), "forward"), "reject", "its retransmission too")
	-- Another connection's segment does not complete it.
	expect_verdict(h:run(seg(50001, 0, full:sub(1, 60)), "forward"), "accept")
	expect_verdict(h:run(seg(50002, 60, full:sub(61)), "forward"), "accept", "other connection")
	-- The kept first segment expires after hold seconds.
	local h2 = harness("sni.lua", { names = { "blocked.example" }, hold = 5 }, { name = "slow" })
	expect_verdict(h2:run(seg(50003, 0, full:sub(1, 60)), "forward"), "accept")
	clock.advance(6)
	expect_verdict(h2:run(seg(50003, 60, full:sub(61)), "forward"), "accept", "second segment after 6 s")
	-- reassemble = false
	local h3 = harness("sni.lua", { names = { "blocked.example" }, reassemble = false }, { name = "noreasm" })
	expect_verdict(h3:run(seg(50004, 0, full:sub(1, 60)), "forward"), "accept")
	expect_verdict(h3:run(seg(50004, 60, full:sub(61)), "forward"), "accept", "not reassembled")
	-- In three segments, out of order.
	local h4 = harness("sni.lua", opts, { name = "three" })
	expect_verdict(h4:run(syn(50005), "forward"), "accept")
	expect_verdict(h4:run(seg(50005, 60, full:sub(61)), "forward"), "accept")
	expect_verdict(h4:run(seg(50005, 20, full:sub(21, 60)), "forward"), "accept")
	expect_verdict(h4:run(seg(50005, 0, full:sub(1, 20)), "forward"), "reject", "the first segment, last")
end)

test("fakes before the real hello: every reading is checked", function()
	local h = harness("sni.lua", opts)
	local fake = packet.tls_client_hello("www.allowed.example")
	local real = packet.tls_client_hello("www.blocked.example")
	expect_verdict(h:run(hello("", { sport = 50100, seq = 1, payload = fake, ttl = 2 }), "forward"), "accept", "the fake")
	expect_verdict(h:run(hello("", { sport = 50100, seq = 1, payload = real }), "forward"), "reject", "the real one")
	local s = h:logs()
	expect_eq(s[#s].sni, "www.blocked.example")
end)

test("a hello fragmented over TLS records", function()
	local h = harness("sni.lua", opts)
	local full = packet.tls_client_hello("www.blocked.example")
	local msg = full:sub(6)
	local function rec(s) return "\22\3\1" .. string.char(math.floor(#s / 256), #s % 256) .. s end
	local split = rec(msg:sub(1, 50)) .. rec(msg:sub(51))
	expect_verdict(h:run(hello("", { payload = split }), "forward"), "reject", "two records, one segment")
end)

test("IPv6", function()
	local h = harness("sni.lua", opts)
	local p = packet.tcp{ src = "2001:db8::10", dst = "2001:db8::443", sport = 50000, dport = 443, flags = "PA",
		payload = packet.tls_client_hello("blocked.example"), ct = { state = "established" } }
	expect_verdict(h:run(p, "forward"), "reject")
end)

test("QUIC: the name is read from the Initial; block_quic blocks all", function()
	local h = harness("sni.lua", opts)
	for _, v in ipairs({ 1, 2 }) do
		local initial = packet.udp{ src = "192.0.2.10", dst = "198.51.100.80", sport = 50000 + v, dport = 443, payload = packet.quic_initial("www.blocked.example", v) }
		expect_verdict(h:run(initial, "forward"), "reject", "version " .. v)
		expect_verdict(h:run(initial, "forward"), "reject", "its retransmission, version " .. v)
		local ok = packet.udp{ src = "192.0.2.10", dst = "198.51.100.80", sport = 50010 + v, dport = 443, payload = packet.quic_initial("www.allowed.example", v) }
		expect_verdict(h:run(ok, "forward"), "accept", "allowed, version " .. v)
	end
	local quic = packet.udp{ src = "192.0.2.10", dst = "198.51.100.80", dport = 443, payload = "\192\0\0\0\1" }
	expect_verdict(h:run(quic, "forward"), "accept", "not an Initial")
	local noquic = harness("sni.lua", { names = { "blocked.example" }, quic = false }, { name = "noquicread" })
	expect_verdict(noquic:run(packet.udp{ dport = 443, payload = packet.quic_initial("www.blocked.example") }, "forward"), "accept", "quic = false")
	expect_verdict(harness("sni.lua", { names = { "x.example" }, block_quic = true }, { name = "noquic" }):run(quic, "forward"), "reject")
end)

test("no name, not TLS, cut short, garbage: all pass without errors", function()
	local h = harness("sni.lua", opts)
	local full = packet.tls_client_hello("blocked.example")
	local cases = {
		{ "no sni", packet.tls_client_hello("") },
		{ "empty", "" },
		{ "http", "GET / HTTP/1.1\r\nHost: blocked.example\r\n\r\n" },
		{ "application data", "\23\3\3\0\5hello" },
		{ "cut in the middle", full:sub(1, 70) },
		{ "handshake byte then garbage", "\22" .. string.rep("\255", 200) },
		{ "server hello", "\22\3\3\0\4\2\0\0\0" },
		{ "record header only", "\22\3\1" },
		{ "huge lengths", "\22\3\1\255\255\1\255\255\255" .. string.rep("A", 100) },
	}
	for _, c in ipairs(cases) do
		local d = h:run(hello("", { payload = c[2], sport = 51000 + _ }), "forward")
		expect_verdict(d, "accept", c[1])
		expect_eq(d.errors, 0, c[1])
	end
end)

test("the tls module: what scripts see", function()
	local sni = harness("testdata/protoprobe.lua", { mode = "sni" })
	local parse = harness("testdata/protoprobe.lua", { mode = "tls" }, { name = "probe-tls" })
	local function tag(h, payload)
		h:run(packet.tcp{ dport = 443, flags = "PA", payload = payload }, "input")
		local logs = h:logs()
		return logs[#logs].r
	end
	local full = packet.tls_client_hello("WWW.Example.COM", { alpn = { "h2", "http/1.1" } })
	expect_eq(tag(sni, full), "www.example.com")
	expect_eq(tag(parse, full), "{alpn={h2,http/1.1},legacy_version=771,sni=www.example.com,truncated=false,version=772,version_name=TLS 1.3}")
	expect_eq(tag(sni, full:sub(1, 50)), "nil:truncated")
	expect_eq(tag(parse, full:sub(1, 50)), "nil:truncated")
	local name_end = select(2, full:find("WWW.Example.COM", 1, true))
	expect_eq(tag(sni, full:sub(1, name_end)), "www.example.com", "cut right after the name")
	expect_eq(tag(parse, full:sub(1, name_end)):match("truncated=(%a+)"), "true")
	expect_eq(tag(sni, packet.tls_client_hello("")), "nil:no sni")
	expect_eq(tag(sni, "GET /"), "nil:not a handshake record")
	expect_eq(tag(sni, "\22\2\0\0\0"), "nil:not tls")
	expect_eq(tag(sni, "\22\3\3\0\4\2\0\0\0"), "nil:not a client hello")
	expect_eq(tag(sni, ""), "nil:truncated")
end)

test("bad options are load errors", function()
	expect_error(function() harness("sni.lua", { names = { "" } }) end, "empty name")
	expect_error(function() harness("sni.lua", { marks = { ["x.example"] = -1 } }) end, "32%-bit")
	expect_error(function() harness("sni.lua", { action = "mark" }) end, "action")
end)

test("reset action: resets to both ends, the hello dropped", function()
	local h = harness("sni.lua", { names = { "blocked.example" }, action = "reset" }, { name = "resetter" })
	local d = h:run(hello("blocked.example", { seq = 1000, ack = 5000 }), "forward")
	expect_verdict(d, "drop")
	expect_eq(#d.injected, 3)
	local to_client, to_server = d.injected[1], d.injected[2]
	expect_eq(to_client.src, "198.51.100.80")
	expect_eq(to_client.dst, "192.0.2.10")
	expect_eq(to_client.flags, "R")
	expect_eq(to_client.seq, 5000, "what the client expects next")
	expect_eq(to_server.dst, "198.51.100.80")
	expect_eq(to_server.dport, 443)
	expect_eq(to_server.seq, 1000, "what the server expects next, the hello dropped")
	expect_true(to_client.checksums_ok and to_server.checksums_ok)
	expect_eq(#h:run(hello("fine.example"), "forward").injected, 0)
	local quic = harness("sni.lua", { names = { "blocked.example" }, action = "reset", block_quic = true }, { name = "quic" })
	expect_verdict(quic:run(packet.udp{ dport = 443, payload = "x" }, "forward"), "reject")
end)

test("options are declared and checked", function()
	expect_options_checked("sni.lua")
end)

test("block_mark: a blocked flow's ct mark, and packets of flows that carry it", function()
	local h = harness("sni.lua", { names = { "blocked.example" }, block_mark = 0x100 }, { name = "marker" })
	local d = h:run(hello("www.blocked.example", { ct = { state = "established", mark = 0x3 } }), "forward")
	expect_verdict(d, "reject")
	expect_eq(d.ct_mark, 0x103, "block_mark bits added, others kept")
	local later = hello("", { payload = "\23\3\3\0\5hello", ct = { state = "established", mark = 0x103 } })
	expect_verdict(h:run(later, "forward"), "reject", "a later packet of the marked flow")
	expect_verdict(h:run(hello("", { payload = "\23\3\3\0\5hello", ct = { state = "established", mark = 0x3 } }), "forward"), "accept", "without the bits")
end)

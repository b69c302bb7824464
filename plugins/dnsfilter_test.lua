-- Tests of dnsfilter.lua (and the dns module): luafw test plugins/dnsfilter_test.lua

local opts = { names = { "ads.example", "*.tracker.example", "Doubleclick.NET." }, allow = { "ok.tracker.example" } }
local h = harness("dnsfilter.lua", opts)

local function q(name, qtype, extra)
	local f = { src = "192.0.2.10", dst = "198.51.100.53", sport = 53000, dport = 53, payload = packet.dns_query(name, qtype or "A") }
	for k, v in pairs(extra or {}) do
		f[k] = v
	end
	return packet.udp(f)
end

test("listed names and their subdomains are rejected", function()
	for _, name in ipairs({ "ads.example", "www.ads.example", "a.b.c.ads.example", "ADS.Example", "ads.example.",
		"tracker.example", "x.tracker.example", "doubleclick.net", "stats.g.doubleclick.net" }) do
		local d = h:run(q(name), "forward")
		expect_verdict(d, "reject", name)
		expect_eq(d.by, "dnsfilter", name)
	end
end)

test("other names pass: no partial-label matches", function()
	for _, name in ipairs({ "example", "notads.example", "ads.example.org", "adsexample", "tracker.example.com",
		"doubleclick.network", "ok.tracker.example", "deep.ok.tracker.example", "" }) do
		expect_verdict(h:run(q(name), "forward"), "accept", name == "" and "(root)" or name)
	end
end)

test("blocked queries are logged with their fields", function()
	h:logs()
	h:run(q("Www.Ads.Example", "AAAA"), "input")
	local logs = h:logs()
	expect_eq(#logs, 1)
	local l = logs[1]
	expect_eq(l.msg, "dns query blocked")
	expect_eq(l.qname, "www.ads.example")
	expect_eq(l.qtype, "AAAA")
	expect_eq(l.rule, "ads.example")
	expect_eq(l.src, "192.0.2.10")
end)

test("every query type, IPv6, and the input hook", function()
	for _, t in ipairs({ "A", "AAAA", "MX", "TXT", "HTTPS", "ANY", 999 }) do
		expect_verdict(h:run(q("ads.example", t), "input"), "reject", tostring(t))
	end
	local v6 = packet.udp{ src = "2001:db8::10", dst = "2001:db8::53", dport = 53, payload = packet.dns_query("ads.example", "AAAA") }
	expect_verdict(h:run(v6, "forward"), "reject", "over IPv6")
	expect_verdict(h:run(v6, "output"), "accept", "output is not a default hook")
end)

test("DNS over TCP", function()
	local msg = packet.dns_query("x.ads.example", "A")
	local framed = string.char(math.floor(#msg / 256), #msg % 256) .. msg
	local p = packet.tcp{ src = "192.0.2.10", dst = "198.51.100.53", dport = 53, flags = "PA", payload = framed, ct = { state = "established" } }
	expect_verdict(h:run(p, "forward"), "reject")
	expect_verdict(h:run(p, "forward"), "reject", "its retransmission: the connection stays blocked")
	expect_verdict(h:run(p:with{ sport = 40001, payload = "", flags = "S", seq = 99 }, "forward"), "accept", "handshake")
	expect_verdict(h:run(p:with{ sport = 40001, payload = framed:sub(1, 2), seq = 100 }, "forward"), "accept", "the length alone")
	expect_verdict(h:run(p:with{ sport = 40001, payload = framed:sub(3, 9), seq = 102 }, "forward"), "accept", "the header's start")
	expect_verdict(h:run(p:with{ sport = 40001, payload = framed:sub(10), seq = 109 }, "forward"), "reject", "the rest")
	local ok = packet.dns_query("fine.example", "A")
	local two = string.char(0, #ok) .. ok .. framed
	expect_verdict(h:run(p:with{ sport = 40002, payload = two }, "forward"), "reject", "two queries in one segment, the second blocked")
	local strict = harness("dnsfilter.lua", { names = { "ads.example" }, malformed = "drop" }, { name = "stricttcp" })
	expect_verdict(strict:run(p:with{ sport = 40003, payload = msg:sub(5) }, "forward"), "accept", "mid-message segment, even when strict")
	local notcp = harness("dnsfilter.lua", { names = { "ads.example" }, tcp = false }, { name = "udponly" })
	expect_verdict(notcp:run(p, "forward"), "accept", "tcp = false")
end)

test("malformed and non-DNS payloads pass, or drop with malformed = drop", function()
	local full = packet.dns_query("ads.example", "A")
	local bad = {
		full:sub(1, 11), -- short header
		full:sub(1, 17), -- cut inside the name
		full:sub(1, #full - 2), -- cut inside the class
		"", -- empty
		"GET / HTTP/1.1\r\n\r\n",
		string.rep("\255", 40), -- label type 0xc0 pointing forward
	}
	local strict = harness("dnsfilter.lua", { names = { "ads.example" }, malformed = "drop" }, { name = "strict" })
	for i, payload in ipairs(bad) do
		local p = q("x", "A", { payload = payload })
		local d = h:run(p, "forward")
		expect_verdict(d, "accept", "bad payload " .. i)
		expect_eq(d.errors, 0, "bad payload " .. i)
		expect_verdict(strict:run(p, "forward"), "drop", "strict, bad payload " .. i)
	end
end)

test("responses and other ports are not judged", function()
	-- A query's bytes with the QR bit set: a response.
	local resp = packet.dns_query("ads.example", "A")
	resp = resp:sub(1, 2) .. string.char(resp:byte(3) + 128) .. resp:sub(4)
	expect_verdict(h:run(q("x", "A", { payload = resp }), "forward"), "accept", "response to port 53")
	expect_verdict(h:run(q("ads.example", "A", { dport = 5353 }), "forward"), "accept", "mDNS port")
	expect_verdict(h:run(q("ads.example", "A", { sport = 53, dport = 40000 }), "forward"), "accept", "from port 53")
	local other = harness("dnsfilter.lua", { names = { "ads.example" }, ports = { 53, 5353 }, action = "drop" }, { name = "ports" })
	expect_verdict(other:run(q("ads.example", "A", { dport = 5353 }), "forward"), "drop", "ports option")
end)

test("the dns module: what scripts see", function()
	local probe = harness("testdata/protoprobe.lua", { mode = "dns" })
	local function parse(payload)
		probe:run(packet.udp{ dport = 53, payload = payload }, "input")
		local logs = probe:logs()
		return logs[#logs].r
	end
	expect_eq(parse(packet.dns_query("WWW.Example.COM.", "AAAA", 7)),
		"{aa=false,ancount=0,arcount=0,id=7,nscount=0,opcode=0,qclass=IN,qdcount=1,qname=www.example.com,qr=false,qtype=AAAA,qtype_num=28,ra=false,rcode=0,rd=true,tc=false}")
	expect_eq(parse(packet.dns_query("a.example", 4242)):match("qtype=(%d+)"), "4242", "unknown types are numbers")
	local full = packet.dns_query("a.example", "A")
	expect_eq(parse(full:sub(1, 11)), "nil:short header")
	expect_eq(parse(full:sub(1, 15)), "nil:truncated")
	-- header + a name that points at itself
	expect_eq(parse(full:sub(1, 12) .. "\192\12\0\1\0\1"), "nil:bad pointer")
	expect_eq(parse(full:sub(1, 12) .. "\64\0\0\1\0\1"), "nil:bad label type")
	-- no question: qdcount 0 gives a table without qname
	local noq = full:sub(1, 4) .. "\0\0" .. full:sub(7, 12)
	expect_eq(parse(noq):match("qname"), nil)
	-- escapes: a label holding a dot and a space
	expect_eq(parse(full:sub(1, 12) .. "\3a.b\2c \0\0\1\0\1"):match("qname=([^,]*)"), "a\\.b.c\\032")
end)

test("bad options are load errors", function()
	expect_error(function() harness("dnsfilter.lua", { names = { 5 } }) end, "not a name")
	expect_error(function() harness("dnsfilter.lua", { names = { "" } }) end, "empty")
	expect_error(function() harness("dnsfilter.lua", { names = { "a.example" }, action = "accept" }) end, "action")
	expect_error(function() harness("dnsfilter.lua", { names = { "a.example" }, malformed = "maybe" }) end, "malformed")
end)

-- hdr reads a DNS header: id, flags, counts.
local function hdr(p)
	local b = { p:byte(1, 12) }
	return { id = b[1] * 256 + b[2], flags = b[3] * 256 + b[4], qd = b[5] * 256 + b[6], an = b[7] * 256 + b[8] }
end

test("sinkhole: blocked UDP queries get an answer built from the query", function()
	local sh = harness("dnsfilter.lua", { names = { "ads.example" }, action = "sinkhole",
		sinkhole = { a = "0.0.0.0", aaaa = "::1", ttl = 30 } }, { name = "sinkhole" })
	local query = q("www.Ads.example", "A")
	local d = sh:run(query, "forward")
	expect_verdict(d, "drop")
	expect_eq(#d.injected, 1)
	local r = d.injected[1]
	expect_eq(r.src, "198.51.100.53")
	expect_eq(r.dst, "192.0.2.10")
	expect_eq(r.sport, 53)
	expect_eq(r.dport, 53000)
	expect_true(r.checksums_ok)
	local hd, qh = hdr(r.payload), hdr(query.payload)
	expect_eq(hd.id, qh.id)
	expect_eq(hd.flags, 0x8180, "QR, RD (copied), RA; NOERROR")
	expect_eq(hd.qd, 1)
	expect_eq(hd.an, 1)
	expect_eq(r.payload:sub(13, #query.payload), query.payload:sub(13), "the question, byte for byte")
	expect_eq(r.payload:sub(-4), "\0\0\0\0", "the A record's address")
	local six = sh:run(packet.udp{ src = "2001:db8::10", dst = "2001:db8::53", dport = 53, payload = packet.dns_query("ads.example", "AAAA") }, "input")
	expect_eq(six.injected[1].payload:sub(-16), string.rep("\0", 15) .. "\1", "the AAAA record's address")
	expect_eq(hdr(sh:run(q("ads.example", "MX"), "forward").injected[1].payload).an, 0, "other types: no records")
	local fine = sh:run(q("fine.example"), "forward")
	expect_verdict(fine, "accept")
	expect_eq(#fine.injected, 0)
end)

test("sinkhole: NXDOMAIN by default; TCP is rejected", function()
	local sh = harness("dnsfilter.lua", { names = { "ads.example" }, action = "sinkhole" }, { name = "nx" })
	local hd = hdr(sh:run(q("ads.example"), "forward").injected[1].payload)
	expect_eq(hd.flags % 16, 3, "NXDOMAIN")
	expect_eq(hd.an, 0)
	local msg = packet.dns_query("ads.example", "A")
	local framed = string.char(math.floor(#msg / 256), #msg % 256) .. msg
	expect_verdict(sh:run(packet.tcp{ src = "192.0.2.10", dst = "198.51.100.53", dport = 53, flags = "PA", payload = framed }, "forward"), "reject")
	expect_error(function() harness("dnsfilter.lua", { names = { "a.example" }, action = "sinkhole", sinkhole = { a = "::" } }) end, "sinkhole")
end)

test("options are declared and checked", function()
	expect_options_checked("dnsfilter.lua")
end)

-- sni: block or mark TLS connections by the server name they ask for.
--
-- Reads the server name (SNI) of the TLS ClientHello a client sends first
-- on TCP port 443 (tls.sni) and matches it against name lists the same way
-- dnsfilter does: "example.com" covers example.com and every subdomain,
-- case-insensitively. A name in `names` (and not in `allow`) blocks the
-- connection: "reject" (the default) resets it, so the client fails at
-- once; "drop" leaves it hanging; "reset" sends TCP resets to both ends
-- (pkt:reply_reset) and drops the hello, so the server's end is freed at
-- once too (a QUIC packet, or a reset that cannot be sent, is rejected). A name in `marks` sets that mark on the
-- packet and on the connection (ct mark), for policy routing, QoS or later
-- rules; `mask` says which mark bits the plugin owns (default: the bits of
-- all mark values together).
--
-- The plugin reads the hello from the engine's first-flight reassembly
-- (stream.tls_hello): the client's first bytes placed by TCP sequence
-- number, so a hello split over segments (a 1.8 KB post-quantum hello, or
-- an evasion tool's cuts), sent out of order, overlapped, interleaved with
-- fakes or an urgent byte, or fragmented over TLS records is read as the
-- server reads it. Where fakes make two readings of the stream, every
-- reading's name is checked. Once a flow is blocked its later packets
-- (retransmissions of the hello, late segments) get the same verdict; with
-- block_mark the flow's ct mark says so too, for a kernel rule or other
-- plugins. See plugins/README.md for the evasion techniques handled.
-- Segments that are not a TLS handshake, hellos without a name and garbage
-- pass untouched. With Encrypted Client Hello the name seen is the outer,
-- public one.
--
-- QUIC (HTTP/3 on UDP 443) carries its hello in Initial packets, whose
-- keys anyone can derive: with quic on (the default) the name is read from
-- them and the same lists apply. block_quic drops all UDP to the ports
-- instead, so that browsers fall back to TCP.
--
-- Cost: every packet of TCP and (with quic or block_quic) UDP to the ports
-- leaves the kernel for the plugin, as every TCP one did before; after a
-- flow's hello is judged, a packet costs a flow lookup and the cached
-- verdict (about 0.5 µs with the callback), a QUIC packet that is not an
-- Initial a header check. Set quic = false to keep QUIC in the kernel.
--
-- Options (defaults):
--   names      = {}                     names to block (and their subdomains)
--   allow      = {}                     exceptions to names
--   action     = "reject"               "reject", "drop" or "reset"
--   marks      = {}                     name -> mark, e.g. {["video.example"] = 0x10}
--   mask       = all marks' bits        mark bits this plugin sets or clears
--   ports      = {443}                  TLS ports (a number or a list)
--   reassemble = true                   read the hello across segments (false:
--                                       each segment on its own)
--   max_hello  = 16384                  bytes of a hello read per connection
--   hold       = 30                     seconds an idle, unfinished hello is kept
--   block_ambiguous = true              block a flow whose fakes make more
--                                       readings than are kept (never legitimate)
--   block_mark = 0                      ct mark bits set on a blocked flow; packets
--                                       of a flow with them get the verdict (with
--                                       offload.drop set to them, the kernel drops
--                                       them before the queue)
--   quic       = true                   read the hello of QUIC Initial packets
--   block_quic = false                  apply `action` to all UDP packets to the ports
--   log        = true                   log blocked connections
--   hooks      = {"forward", "output"}  where client traffic passes
--   priority   = "filter"
--
-- Example (luafw config):
--   plugins:
--     - file: plugins/sni.lua
--       options:
--         names: [blocked.example, "*.tracker.example"]
--         marks: {video.example: 0x10, backup.example: 0x20}
--         mask: 0xf0
--         block_quic: true

local O = fw.schema{
	names = { type = "list", default = {}, doc = "names to block (and their subdomains)" },
	allow = { type = "list", default = {}, doc = "exceptions to names" },
	action = { type = "string", default = "reject", values = { "reject", "drop", "reset" }, doc = "what blocked connections get" },
	marks = { type = "table", default = {}, doc = "name -> mark, e.g. {[\"video.example\"] = 0x10}" },
	mask = { type = "integer", min = 0, max = 0xffffffff, doc = "mark bits this plugin sets or clears (default: all marks' bits)" },
	ports = { type = "ports", default = { 443 }, doc = "TLS ports" },
	reassemble = { type = "boolean", default = true, doc = "read the hello across segments (false: each segment on its own)" },
	max_hello = { type = "integer", default = 16384, min = 0, doc = "bytes of a hello read per connection" },
	hold = { type = "number", default = 30, min = 0, doc = "seconds an idle, unfinished hello is kept" },
	block_ambiguous = { type = "boolean", default = true, doc = "block a flow whose fakes make more readings than are kept" },
	block_mark = { type = "integer", default = 0, min = 0, max = 0xffffffff, doc = "ct mark bits set on a blocked flow; packets of a flow with them get the verdict" },
	quic = { type = "boolean", default = true, doc = "read the hello of QUIC Initial packets" },
	block_quic = { type = "boolean", default = false, doc = "apply action to all UDP packets to the ports" },
	log = { type = "boolean", default = true, doc = "log blocked connections" },
	hooks = { type = "hooks", default = { "forward", "output" }, doc = "hooks to run on" },
	priority = { type = "priority", default = "filter", doc = "where in the hook" },
}

local list = fw.list

local names = net.domains(list(O.names), fw.plugin .. ": option names")
local allow = net.domains(list(O.allow), fw.plugin .. ": option allow")
local actions = { drop = fw.DROP, reject = fw.REJECT, reset = "reset" }
local verdict = actions[O.action]
if not verdict then
	error(fw.plugin .. ": option action must be drop, reject or reset", 0)
end
local all_bits = 0
for name, mark in pairs(O.marks) do
	if type(mark) ~= "number" or mark < 0 or mark > 0xffffffff or mark % 1 ~= 0 then
		error(string.format("%s: option marks: the mark of %s must be a 32-bit number", fw.plugin, tostring(name)), 0)
	end
	all_bits = bit.bor(all_bits, mark)
end
local marks = net.domains(O.marks, fw.plugin .. ": option marks")
local mask = O.mask or all_bits
local ports = {}
for _, p in ipairs(list(O.ports)) do
	ports[tonumber(p)] = true
end
local reassemble = O.reassemble
local max_hello = O.max_hello
local hold = O.hold
local block_ambiguous = O.block_ambiguous
local block_mark = O.block_mark
local quic = O.quic
local block_quic = O.block_quic
local log_blocked = O.log
if reassemble then
	stream.limits{ bytes = max_hello, seconds = hold }
end
local blocked_total = state.counter("sni:" .. fw.plugin .. ":blocked")

-- decide applies the lists to a hello's names (every reading's: fakes
-- may make more than one) and returns the verdict, or nil.
local function decide(pkt, hello)
	local blocked, rule
	for _, name in ipairs(hello.names or { hello.sni }) do
		rule = names:match(name)
		if rule and not allow:match(name) then
			blocked = name
			break
		end
	end
	if not blocked and hello.ambiguous and block_ambiguous then
		blocked, rule = hello.sni or "", "ambiguous"
	end
	if blocked then
		blocked_total:incr()
		if log_blocked then
			log.info("tls connection blocked", { sni = blocked, rule = rule, src = pkt.src, dst = pkt.dst, dport = pkt.dport, proto = pkt.proto })
		end
		if block_mark ~= 0 then
			pkt.ct:set_mark(block_mark, block_mark)
		end
		if verdict == "reset" then
			return pkt:reply_reset() and fw.DROP or fw.REJECT
		end
		return verdict
	end
	local _, mark = marks:match(hello.sni or "")
	if mark then
		pkt:set_mark(mark, mask)
		pkt.ct:set_mark(mark, mask)
	end
end

-- judge returns the verdict for a packet of a flow whose hello is read,
-- deciding once per flow: the hello table is the flow's, kept by the
-- engine, and keeps the decision.
local function judge(pkt, hello)
	local v = hello.verdict
	if v == nil then
		v = decide(pkt, hello) or false
		hello.verdict = v
	end
	return v or nil
end

-- judge_stream judges a packet of a reassembled flow (TCP, or QUIC's
-- Initial): nil until the flow's hello is complete.
local function judge_stream(pkt)
	local hello = stream.tls_hello(pkt)
	if hello then
		return judge(pkt, hello)
	end
end

-- Only traffic to the TLS ports (and QUIC's, when blocked) reaches the
-- plugin.
local port_list = fw.keys(ports)
fw.register{
	name = "sni",
	hook = O.hooks,
	priority = O.priority,
	match = #port_list > 0 and { proto = (block_quic or quic) and { "tcp", "udp" } or "tcp", dport = port_list } or nil,
	fn = function(pkt)
		if not ports[pkt.dport] then
			return
		end
		local proto = pkt.proto
		if proto == "udp" then
			if block_quic then
				return verdict == "reset" and fw.REJECT or verdict
			end
			if quic then
				return judge_stream(pkt)
			end
			return
		end
		if proto ~= "tcp" then
			return
		end
		if block_mark ~= 0 then
			local m = pkt.ct.mark
			if m and bit.band(m, block_mark) == block_mark then
				return verdict == "reset" and fw.DROP or verdict
			end
		end
		if reassemble then
			return judge_stream(pkt)
		end
		local data = pkt.payload
		if #data == 0 or data:byte(1) ~= 0x16 then
			return -- not a handshake record: application data, or not TLS
		end
		local name = tls.sni(data)
		if name then
			return decide(pkt, { sni = name, names = { name } })
		end
	end,
}

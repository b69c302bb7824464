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
-- A large ClientHello (post-quantum key shares make them ~1.8 KB) spans two
-- TCP segments and the name may sit in the second. With reassemble on, the
-- plugin keeps the first segment (up to max_hello bytes, for 5 seconds) and
-- reads the name once the next one arrives. Segments that are not a TLS
-- handshake, hellos without a name and garbage pass untouched. With
-- Encrypted Client Hello the name seen is the outer, public one.
--
-- QUIC (HTTP/3 on UDP 443) encrypts its hello; block_quic drops UDP to the
-- ports so that browsers fall back to TCP, where the name is visible.
--
-- Options (defaults):
--   names      = {}                     names to block (and their subdomains)
--   allow      = {}                     exceptions to names
--   action     = "reject"               "reject", "drop" or "reset"
--   marks      = {}                     name -> mark, e.g. {["video.example"] = 0x10}
--   mask       = all marks' bits        mark bits this plugin sets or clears
--   ports      = {443}                  TLS ports (a number or a list)
--   reassemble = true                   read names split over two segments
--   max_hello  = 16384                  bytes kept per connection for that
--   block_quic = false                  apply `action` to UDP packets to the ports
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
	reassemble = { type = "boolean", default = true, doc = "read names split over two segments" },
	max_hello = { type = "integer", default = 16384, min = 0, doc = "bytes kept per connection for that" },
	block_quic = { type = "boolean", default = false, doc = "apply action to UDP packets to the ports" },
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
local block_quic = O.block_quic
local log_blocked = O.log
local pending = state.map("sni:" .. fw.plugin .. ":pending") -- flow -> first segment(s) of a cut hello
local blocked_total = state.counter("sni:" .. fw.plugin .. ":blocked")

local function flow_key(pkt)
	return pkt.src .. " " .. pkt.sport .. " " .. pkt.dst .. " " .. pkt.dport
end

-- decide applies the lists to a name.
local function decide(pkt, name)
	local rule = names:match(name)
	if rule and not allow:match(name) then
		blocked_total:incr()
		if log_blocked then
			log.info("tls connection blocked", { sni = name, rule = rule, src = pkt.src, dst = pkt.dst, dport = pkt.dport })
		end
		if verdict == "reset" then
			return pkt:reply_reset() and fw.DROP or fw.REJECT
		end
		return verdict
	end
	local _, mark = marks:match(name)
	if mark then
		pkt:set_mark(mark, mask)
		pkt.ct:set_mark(mark, mask)
	end
end

-- Only traffic to the TLS ports (and QUIC's, when blocked) reaches the
-- plugin.
local port_list = fw.keys(ports)
fw.register{
	name = "sni",
	hook = O.hooks,
	priority = O.priority,
	match = #port_list > 0 and { proto = block_quic and { "tcp", "udp" } or "tcp", dport = port_list } or nil,
	fn = function(pkt)
		if not ports[pkt.dport] then
			return
		end
		local proto = pkt.proto
		if proto == "udp" and block_quic then
			return verdict == "reset" and fw.REJECT or verdict
		end
		if proto ~= "tcp" then
			return
		end
		local data = pkt.payload
		if #data == 0 then
			return
		end
		local key
		if reassemble and pending:len() > 0 then
			key = flow_key(pkt)
			local first = pending:get(key)
			if first then
				pending:delete(key)
				data = first .. data
			end
		end
		if data:byte(1) ~= 0x16 then
			return -- not a handshake record: application data, or not TLS
		end
		local name, why = tls.sni(data)
		if name then
			return decide(pkt, name)
		end
		if why == "truncated" and reassemble and #data < max_hello then
			pending:set(key or flow_key(pkt), data, 5)
		end
	end,
}

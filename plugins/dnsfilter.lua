-- dnsfilter: block DNS queries for listed names and their subdomains.
--
-- Reads the first question of DNS queries sent to port 53 (UDP, and TCP
-- unless tcp = false) with dns.parse, and blocks the query when its name
-- is a listed name or any subdomain of one: "example.com" blocks
-- example.com, www.example.com and a.b.example.com, not badexample.com.
-- Names compare case-insensitively. `allow` lists exceptions, matched the
-- same way, that win over `names`. Every blocked query is logged
-- (log.info, rate-limited) with its name, type, rule and client.
--
-- "reject" (the default) answers the client with an ICMP port unreachable
-- (a TCP reset over TCP), so resolvers fail over at once instead of
-- waiting for a timeout. "sinkhole" answers a blocked UDP query itself, as
-- a resolver would (dns.answer: the query's id, question and RD flag): with
-- the `sinkhole` addresses for A and AAAA queries (no records for other
-- types), or NXDOMAIN when sinkhole = "nxdomain" (the default); the query
-- is dropped. Over TCP, and when the answer cannot be sent (the plugin's
-- send rate limit, see docs/lua-api.md), a sinkholed query is rejected. Packets on port 53 that do not parse as a DNS
-- query (truncated, not DNS) pass unless malformed = "drop" (UDP only: a
-- TCP segment may hold the middle of a message); responses are never
-- touched. Over TCP the messages (each a 2-byte length, then the message)
-- are read from the engine's reassembly of the client's stream
-- (stream.dns): split anywhere, reordered, pipelined several to a segment,
-- each query is checked; the segment that completes a blocked query gets
-- the verdict, and so do the connection's later packets (for `hold`
-- seconds), so that a retransmission cannot carry it through.
--
-- Options (defaults):
--   names     = {}                    blocked names (each also blocks its subdomains)
--   allow     = {}                    exceptions (each also allows its subdomains)
--   action    = "reject"              "reject", "drop" or "sinkhole"
--   sinkhole  = "nxdomain"            with action sinkhole: "nxdomain", or {a = "0.0.0.0", aaaa = "::", ttl = 60}
--   malformed = "accept"              what unparsable UDP port-53 payloads get: "accept" or "drop"
--   ports     = {53}                  DNS ports (a number or a list)
--   tcp       = true                  also read DNS over TCP
--   hold      = 60                    seconds a TCP connection stays blocked
--   log       = true                  log blocked queries
--   hooks     = {"input", "forward"}  add "output" for this host's own queries
--   priority  = "filter"
--
-- Example (luafw config):
--   plugins:
--     - file: plugins/dnsfilter.lua
--       options:
--         names: [doubleclick.net, tracker.example, "*.ads.example.org"]
--         allow: [safe.tracker.example]
--         action: reject

local O = fw.schema{
	names = { type = "list", default = {}, doc = "blocked names (each also blocks its subdomains)" },
	allow = { type = "list", default = {}, doc = "exceptions (each also allows its subdomains)" },
	action = { type = "string", default = "reject", values = { "reject", "drop", "sinkhole" }, doc = "what queries for blocked names get" },
	sinkhole = { type = "any", default = "nxdomain", doc = "with action sinkhole: \"nxdomain\", or {a = \"0.0.0.0\", aaaa = \"::\", ttl = 60}" },
	malformed = { type = "string", default = "accept", values = { "accept", "drop" }, doc = "what unparsable payloads to the DNS ports get" },
	ports = { type = "ports", default = { 53 }, doc = "DNS ports" },
	tcp = { type = "boolean", default = true, doc = "also read DNS over TCP" },
	hold = { type = "number", default = 60, min = 0, doc = "seconds a TCP connection stays blocked after a blocked query" },
	log = { type = "boolean", default = true, doc = "log blocked queries" },
	hooks = { type = "hooks", default = { "input", "forward" }, doc = "hooks to run on" },
	priority = { type = "priority", default = "filter", doc = "where in the hook" },
}

local list = fw.list

-- Names match themselves and their subdomains (net.domains normalizes
-- case, a leading "*." or "." and a trailing dot).
local names = net.domains(list(O.names), fw.plugin .. ": option names")
local allow = net.domains(list(O.allow), fw.plugin .. ": option allow")
local count = names:size()
local actions = { drop = fw.DROP, reject = fw.REJECT, sinkhole = "sinkhole" }
local verdict = actions[O.action]
if not verdict then
	error(fw.plugin .. ": option action must be drop, reject or sinkhole", 0)
end
-- The sinkhole answer's settings, checked at load with a query built here.
local sinkhole = O.sinkhole
if sinkhole == "nxdomain" then
	sinkhole = { nxdomain = true }
elseif type(sinkhole) ~= "table" then
	error(fw.plugin .. ": option sinkhole must be \"nxdomain\" or a table {a = ..., aaaa = ..., ttl = ...}", 0)
end
do
	local probe = "\0\1\1\0\0\1\0\0\0\0\0\0\1x\0\0\1\0\1"
	local ok, err = pcall(dns.answer, probe, sinkhole)
	if not ok then
		error(fw.plugin .. ": option sinkhole: " .. tostring(err), 0)
	end
end

-- answer sinkholes a blocked query: the answer goes back to the client
-- and the query is dropped; REJECT when that is not possible.
local function answer(pkt, proto, payload)
	if proto ~= "udp" then
		return fw.REJECT
	end
	local reply = dns.answer(payload, sinkhole)
	if reply and pkt:reply_udp(reply) then
		return fw.DROP
	end
	return fw.REJECT
end
local malformed = O.malformed
if malformed ~= "accept" and malformed ~= "drop" then
	error(fw.plugin .. ": option malformed must be accept or drop", 0)
end
local ports = {}
for _, p in ipairs(list(O.ports)) do
	ports[tonumber(p)] = true
end
local tcp = O.tcp
local hold = O.hold
local blocked_flows = state.map("dnsfilter:" .. fw.plugin .. ":blocked_flows") -- TCP flow -> verdict
local log_blocked = O.log
local blocked_total = state.counter("dnsfilter:" .. fw.plugin .. ":blocked")

if count == 0 and state.counter("dnsfilter:" .. fw.plugin .. ":warned"):incr() == 1 then
	log.warn("dnsfilter has no names to block: set options.names")
end

-- judge returns the verdict for one query message.
local function judge(pkt, proto, payload, msg)
	if msg.qr or not msg.qname then
		return -- a response, or a message without a question: not ours to judge
	end
	local qname = msg.qname
	local rule = names:match(qname)
	if not rule or allow:match(qname) then
		return
	end
	blocked_total:incr()
	if log_blocked then
		log.info("dns query blocked", { qname = qname, qtype = msg.qtype, rule = rule, src = pkt.src, dst = pkt.dst, proto = proto })
	end
	if verdict == "sinkhole" then
		return answer(pkt, proto, payload)
	end
	return verdict
end

-- judge_tcp reads the queries a TCP segment completes; a connection that
-- sent a blocked one stays blocked.
local function judge_tcp(pkt)
	local key = pkt.src .. " " .. pkt.sport .. " " .. pkt.dst .. " " .. pkt.dport
	if blocked_flows:len() > 0 then
		local v = blocked_flows:get(key)
		if v then
			return v
		end
	end
	local msgs = stream.dns(pkt)
	if not msgs then
		return
	end
	for _, msg in ipairs(msgs) do
		if not msg.malformed then
			local v = judge(pkt, "tcp", nil, msg)
			if v then
				blocked_flows:set(key, v, hold)
				return v
			end
		end
	end
end

-- Only queries to the DNS ports reach the plugin (and leave the kernel).
local port_list = fw.keys(ports)
fw.register{
	name = "dnsfilter",
	hook = O.hooks,
	priority = O.priority,
	match = #port_list > 0 and { proto = tcp and { "udp", "tcp" } or "udp", dport = port_list } or nil,
	fn = function(pkt)
		local proto = pkt.proto
		if not ports[pkt.dport] or not (proto == "udp" or (tcp and proto == "tcp")) then
			return
		end
		local payload = pkt.payload
		if proto == "tcp" then
			return judge_tcp(pkt)
		end
		local msg = dns.parse(payload)
		if not msg then
			if malformed == "drop" then
				return fw.DROP
			end
			return
		end
		return judge(pkt, proto, payload, msg)
	end,
}

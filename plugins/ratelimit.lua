-- ratelimit: per-source rate limits for new connections, with temporary bans.
--
-- Each source gets a token bucket: every new connection (conntrack state
-- "new"; without conntrack, a TCP SYN without ACK) to one of the limited
-- ports takes a token, and tokens come back at `rate`. A source that finds
-- its bucket empty is banned for `ban` seconds: its new connections to the
-- limited ports are dropped (scope = "ports") or every packet it sends on
-- the plugin's hooks is (scope = "all"). Connections already established
-- are never touched, so an admin's open session survives a ban. The classic
-- use is SSH brute force: 5 attempts at once, then 1 every 20 s.
--
-- IPv6 sources are limited per prefix (v6_prefix, default /64): one
-- attacker usually holds a whole /64 and would otherwise get a bucket per
-- address. Sources in `allow` are never limited.
--
-- Options (defaults):
--   ports     = {22}       destination ports limited (a number or a list)
--   proto     = "tcp"      "tcp", "udp" or "any"
--   rate      = "3/min"    refill: tokens per second (a number), or "N/s", "N/min", "N/h"
--   burst     = 5          new connections allowed at once (bucket size)
--   ban       = 600        seconds a source stays banned; 0 = no ban, only over-limit attempts are dropped
--   scope     = "ports"    what a ban blocks: "ports" or "all"
--   action    = "drop"     "drop" or "reject"
--   allow     = {}         addresses or CIDRs never limited
--   v6_prefix = 64         IPv6 sources share a bucket per prefix of this length (a multiple of 4, up to 128)
--   hooks     = {"input"}  add "forward" to protect hosts behind a router
--   priority  = "filter"
--   log       = true       log a line when a source gets banned
--   state     = "local"    "cluster": buckets, bans and the ban count are shared
--                          by every luafw of the fleet (the config's state:
--                          section, docs/scale.md); limits become approximate
--
-- Without conntrack, UDP has no "new" state: every UDP packet to a limited
-- port takes a token. The bucket and ban state is shared by all workers.
--
-- Example (luafw config):
--   plugins:
--     - file: plugins/ratelimit.lua
--       options:
--         ports: [22, 2222]
--         rate: 3/min
--         burst: 5
--         ban: 900
--         allow: [192.0.2.0/24]
--         hooks: [input, forward]

local O = fw.schema{
	ports = { type = "ports", default = { 22 }, doc = "destination ports limited" },
	proto = { type = "string", default = "tcp", values = { "tcp", "udp", "any" }, doc = "protocol limited" },
	rate = { type = "rate", default = "3/min", doc = "refill: tokens per second, or \"N/s\", \"N/min\", \"N/h\"" },
	burst = { type = "number", default = 5, min = 0, doc = "new connections allowed at once (bucket size)" },
	ban = { type = "number", default = 600, min = 0, doc = "seconds a source stays banned; 0 = no ban" },
	scope = { type = "string", default = "ports", values = { "ports", "all" }, doc = "what a ban blocks" },
	action = { type = "string", default = "drop", values = { "drop", "reject" }, doc = "what over-limit packets get" },
	allow = { type = "cidrs", doc = "addresses or CIDRs never limited" },
	v6_prefix = { type = "integer", default = 64, min = 4, max = 128, doc = "IPv6 sources share a bucket per prefix of this length (a multiple of 4)" },
	hooks = { type = "hooks", default = { "input" }, doc = "hooks to run on" },
	priority = { type = "priority", default = "filter", doc = "where in the hook" },
	log = { type = "boolean", default = true, doc = "log a line when a source gets banned" },
	state = { type = "string", default = "local", values = { "local", "cluster" }, doc = "\"cluster\": share buckets and bans with the fleet" },
}

local ports = {}
for _, p in ipairs(O.ports) do
	ports[p] = true
end
local proto = O.proto
local rate = O.rate
local burst = O.burst
local ban = O.ban
local scope = O.scope
local verdict = O.action == "reject" and fw.REJECT or fw.DROP
local v6_prefix = O.v6_prefix
if v6_prefix % 4 ~= 0 then
	error(fw.plugin .. ": option v6_prefix must be a multiple of 4 from 4 to 128", 0)
end
local allow = nil
if O.allow then
	allow = net.set(O.allow)
end
local log_bans = O.log

local shared = O.state
local bucket = state.bucket("ratelimit:" .. fw.plugin, { rate = rate, burst = burst, scope = shared })
local bans = state.map("ratelimit:" .. fw.plugin .. ":bans", { scope = shared })
local banned_total = state.counter("ratelimit:" .. fw.plugin .. ":banned", { scope = shared })

-- v6key returns the first v6_prefix bits of an IPv6 address as hex
-- digits, so that every address of one prefix shares a key.
local function v6key(addr)
	if v6_prefix == 128 or addr:find(".", 1, true) then
		return addr
	end
	local head, tail = addr:match("^(.-)::(.*)$")
	local groups = {}
	local function add(part)
		for g in part:gmatch("[^:]+") do
			groups[#groups + 1] = g
		end
	end
	if head then
		add(head)
		local after = {}
		for g in tail:gmatch("[^:]+") do
			after[#after + 1] = g
		end
		for _ = 1, 8 - #groups - #after do
			groups[#groups + 1] = "0"
		end
		for _, g in ipairs(after) do
			groups[#groups + 1] = g
		end
	else
		add(addr)
	end
	local hex = {}
	for i, g in ipairs(groups) do
		hex[i] = string.rep("0", 4 - #g) .. g
	end
	-- Keep the prefix's hex digits, zero the rest of their last group, and
	-- write it as a prefix: 2001:db8:66:0::/64.
	local digits = table.concat(hex):sub(1, v6_prefix / 4)
	digits = digits .. string.rep("0", (4 - #digits % 4) % 4)
	local out = {}
	for i = 1, #digits, 4 do
		out[#out + 1] = (digits:sub(i, i + 3):gsub("^0+(%x)", "%1"))
	end
	local key = table.concat(out, ":")
	if #out < 8 then
		key = key .. "::"
	end
	return key .. "/" .. v6_prefix
end

local function source_key(pkt)
	local src = pkt.src
	if pkt.family == 6 then
		return v6key(src)
	end
	return src
end

local function is_new(pkt)
	local st = pkt.ct.state
	if st then
		return st == "new"
	end
	if pkt.proto == "tcp" then
		return pkt.tcp.syn and not pkt.tcp.ack
	end
	return true
end

local function limited(pkt)
	local p = pkt.proto
	if proto == "any" then
		if p ~= "tcp" and p ~= "udp" then
			return false
		end
	elseif p ~= proto then
		return false
	end
	return ports[pkt.dport] == true
end

-- With scope "ports" only new connections to the limited ports matter;
-- with "all" a banned source's every packet does.
local match
local port_list = fw.keys(ports)
if scope == "ports" and #port_list > 0 then
	match = { proto = proto == "any" and { "tcp", "udp" } or proto, dport = port_list, ct_state = "new" }
end
fw.register{
	name = "ratelimit",
	hook = O.hooks,
	priority = O.priority,
	match = match,
	fn = function(pkt)
		local src = pkt.src
		if not src then
			return -- not an IP packet we can read
		end
		if scope == "all" then
			if bans:get(source_key(pkt)) then
				return verdict
			end
		end
		if not limited(pkt) or not is_new(pkt) then
			return
		end
		if allow and allow:contains(src) then
			return
		end
		local key = source_key(pkt)
		if bans:get(key) then
			return verdict
		end
		if bucket:take(key) then
			return
		end
		if ban > 0 then
			bans:set(key, true, ban)
			banned_total:incr()
			if log_bans then
				log.warn("source banned", { src = src, key = key, dport = pkt.dport, proto = pkt.proto, seconds = ban })
			end
		end
		return verdict
	end,
}

-- blocklist: drop or reject traffic from (or to) listed addresses.
--
-- The list comes from CIDR list files (one address or prefix per line, '#'
-- comments; see lists/blocklist.sample.txt) and from inline entries; IPv4
-- and IPv6 mix freely. Files are read once per (re)load, relative to this
-- plugin's directory, and shared by all workers. A file outside this
-- plugin's directory must be under a directory the configuration lists in
-- allow_dirs (the sandbox refuses any other path). A lookup is a binary
-- search over merged ranges, so lists of 100,000 entries load in a few tens
-- of milliseconds and cost the same per packet as small ones. Reload the
-- daemon to pick up a changed file.
--
-- It runs at the filter priority like the other shipped plugins, so one
-- diversion serves them all (each priority stage a hook's plugins span
-- costs the packet another trip through a queue); list it first in the
-- configuration so listed sources are gone before rate limits or logs see
-- them. To drop before conntrack sees the packet, set priority = "raw" and
-- hooks = {"prerouting"}.
--
-- Options (defaults):
--   files    = {}                    list files (a string or a list)
--   entries  = {}                    inline addresses or CIDRs
--   match    = "src"                 "src", "dst" or "both" (either address listed)
--   action   = "drop"                "drop" or "reject" (TCP reset / ICMP unreachable)
--   hooks    = {"input", "forward"}  add "output" with match = "dst" to stop this host reaching listed addresses
--   priority = "filter"
--   log      = false                 log each blocked packet (rate-limited)
--
-- Example (luafw config):
--   allow_dirs: [/etc/luafw]
--   plugins:
--     - file: plugins/blocklist.lua
--       options:
--         files: [lists/blocklist.sample.txt, /etc/luafw/drop.txt]
--         entries: [192.0.2.66, "2001:db8:bad::/48"]
--         match: both
--         action: reject

local O = fw.schema{
	files = { type = "strings", default = {}, doc = "list files (one address or CIDR a line)" },
	entries = { type = "cidrs", default = {}, doc = "inline addresses or CIDRs" },
	match = { type = "string", default = "src", values = { "src", "dst", "both" }, doc = "which address is looked up" },
	action = { type = "string", default = "drop", values = { "drop", "reject" }, doc = "what listed packets get" },
	hooks = { type = "hooks", default = { "input", "forward" }, doc = "hooks to run on" },
	priority = { type = "priority", default = "filter", doc = "where in the hook" },
	log = { type = "boolean", default = false, doc = "log each blocked packet (rate-limited)" },
}

local list = fw.list

local sets = {}
local size = 0
for _, file in ipairs(list(O.files)) do
	local s = net.load(file)
	sets[#sets + 1] = s
	size = size + s:size()
end
local entries = list(O.entries)
if #entries > 0 then
	local s = net.set(entries)
	sets[#sets + 1] = s
	size = size + s:size()
end

local match = O.match
local check_src = match == "src" or match == "both"
local check_dst = match == "dst" or match == "both"
if not check_src and not check_dst then
	error(fw.plugin .. ": option match must be src, dst or both", 0)
end
local actions = { drop = fw.DROP, reject = fw.REJECT }
local verdict = actions[O.action]
if not verdict then
	error(fw.plugin .. ": option action must be drop or reject", 0)
end
local log_blocked = O.log
local blocked = state.counter("blocklist:" .. fw.plugin .. ":blocked")

-- The top level runs once per worker: note an empty list once per engine.
if size == 0 and state.counter("blocklist:" .. fw.plugin .. ":warned"):incr() == 1 then
	log.warn("blocklist is empty: set options.files or options.entries")
end

local function listed(addr)
	for i = 1, #sets do
		if sets[i]:contains(addr) then
			return true
		end
	end
	return false
end

fw.register{
	name = "blocklist",
	hook = O.hooks,
	priority = O.priority,
	fn = function(pkt)
		local hit
		if check_src then
			local src = pkt.src
			if src and listed(src) then
				hit = src
			end
		end
		if not hit and check_dst then
			local dst = pkt.dst
			if dst and listed(dst) then
				hit = dst
			end
		end
		if not hit then
			return
		end
		blocked:incr()
		if log_blocked then
			log.info("blocked", { addr = hit, src = pkt.src, dst = pkt.dst, proto = pkt.proto, dport = pkt.dport })
		end
		return verdict
	end,
}

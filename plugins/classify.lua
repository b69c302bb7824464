-- classify: give each new connection a class, as a conntrack mark.
--
-- On a connection's first packet (conntrack state "new") the rules are
-- tried in order and the first that matches sets its `mark` on the
-- connection (ct mark) and, by default, on the packet itself, so that the
-- first packet is routed like the rest. Kernel policy routing
-- (`ip rule add fwmark 0x2/0xff table 100`), traffic control
-- (`tc filter ... handle 0x2 fw`) and later plugins (pkt.ct.mark) then use
-- the class. `mask` is the part of the mark the plugin owns: other bits
-- (luafw's own, other plugins') are left alone. A rule also tags the
-- packet with its name (pkt:tagged("voip") in later callbacks).
--
-- Later packets of the connection do not need the plugin: have the kernel
-- copy the class from the connection to each packet (nftables
-- `meta mark set ct mark and 0xff`, iptables
-- `-t mangle -A PREROUTING -j CONNMARK --restore-mark --mask 0xff`),
-- and keep them off the queue altogether ("offload"): in the luafw
-- configuration `offload: {mask: 0x100}` makes the diversion skip packets
-- whose ct mark has any of those bits, and `offload_mark: 0x100` here adds
-- that bit to every classified connection (a rule with offload = false
-- does not get it). With your own iptables rules, put
-- `-m connmark --mark 0x100/0x100 -j ACCEPT` before the NFQUEUE rule.
-- Offloaded connections are seen by no plugin after their first packet:
-- do not offload flows that dnsfilter or sni must read (DNS, TLS). Without
-- offload, restore = true copies the class onto later packets in the
-- plugin (each read of pkt.ct.mark costs a conntrack lookup). Without
-- conntrack every packet is classified, and only its packet mark is set.
--
-- Rule fields (all optional but mark; a rule matches when every given
-- field does):
--   name     class name, used as the packet tag (default "class<N>")
--   mark     the class, a value within mask
--   proto    "tcp", "udp", "icmp", "icmpv6" or a protocol number
--   dport, sport  a port, a list of ports, or a range "6000-7000"
--   src, dst addresses or CIDRs (a string or a list)
--   indev, outdev  interface name; a trailing "+" matches a prefix ("wg+")
--   family   4 or 6
--   offload  false to keep this class on the queue when offload_mark is set
--
-- Options (defaults):
--   rules        = {}                       the rules, in order
--   mask         = 0xff                     mark bits the plugin owns
--   default      = nil                      class (mark) of connections no rule matches
--   packet_mark  = true                     also set the mark on the first packet
--   offload_mark = nil                      extra ct mark bit(s) for classified connections
--   restore      = false                    copy the class onto later packets
--   hooks        = {"prerouting", "output"}  where connections start (forwarded/incoming, local)
--   priority     = "mangle"                 after conntrack, where routing marks are set
--
-- Example (luafw config):
--   offload: {mask: 0x100}
--   plugins:
--     - file: plugins/classify.lua
--       options:
--         mask: 0xff
--         offload_mark: 0x100
--         rules:
--           - {name: voip, proto: udp, dport: "10000-20000", mark: 1}
--           - {name: ssh, proto: tcp, dport: 22, mark: 2}
--           - {name: backup, dst: [198.51.100.0/24], mark: 3, offload: false}
--           - {name: vpn, indev: "wg+", mark: 4}

local O = fw.schema{
	rules = { type = "table", default = {}, doc = "the rules, in order ({name, mark, proto, dport, sport, src, dst, indev, outdev, family, offload})" },
	mask = { type = "integer", default = 0xff, min = 0, max = 0xffffffff, doc = "mark bits the plugin owns" },
	default = { type = "integer", min = 0, max = 0xffffffff, doc = "class (mark) of connections no rule matches" },
	packet_mark = { type = "boolean", default = true, doc = "also set the mark on the first packet" },
	offload_mark = { type = "integer", min = 0, max = 0xffffffff, doc = "extra ct mark bit(s) for classified connections" },
	restore = { type = "boolean", default = false, doc = "copy the class onto later packets" },
	hooks = { type = "hooks", default = { "prerouting", "output" }, doc = "hooks to run on" },
	priority = { type = "priority", default = "mangle", doc = "where in the hook" },
}

local list = fw.list

local function fail(i, msg)
	error(string.format("%s: rule %d: %s", fw.plugin, i, msg), 0)
end

-- has_bits_outside reports whether v has a bit set that mask has not (Lua
-- 5.1 has no bit operators).
local function has_bits_outside(v, mask)
	for _ = 1, 32 do
		if v % 2 == 1 and mask % 2 == 0 then
			return true
		end
		-- (separate statements: gopher-lua miscompiles a multiple
		-- assignment of calls that read the assigned variables)
		v = math.floor(v / 2)
		mask = math.floor(mask / 2)
	end
	return false
end

local function u32(v, what)
	if type(v) ~= "number" or v < 0 or v > 0xffffffff or v % 1 ~= 0 then
		error(string.format("%s: %s must be a 32-bit number, not %s", fw.plugin, what, tostring(v)), 0)
	end
	return v
end

local mask = u32(O.mask, "option mask")
local offload_mark = O.offload_mark and u32(O.offload_mark, "option offload_mark") or 0
local default = O.default and u32(O.default, "option default") or nil
local packet_mark = O.packet_mark
local restore = O.restore
if default and has_bits_outside(default, mask) then
	error(fw.plugin .. ": option default has bits outside mask", 0)
end
if offload_mark ~= 0 and not has_bits_outside(offload_mark, mask) then
	error(fw.plugin .. ": option offload_mark must use bits outside mask", 0)
end

-- port_matcher turns a port spec into a function of a port number.
local function port_matcher(i, v)
	local set, ranges = {}, {}
	for _, p in ipairs(list(v)) do
		if type(p) == "number" then
			set[p] = true
		else
			local lo, hi = tostring(p):match("^%s*(%d+)%s*%-%s*(%d+)%s*$")
			lo, hi = tonumber(lo), tonumber(hi)
			if not lo then
				lo = tonumber(p)
				hi = lo
			end
			if not lo or lo > hi then
				fail(i, "bad port " .. tostring(p))
			end
			ranges[#ranges + 1] = { lo, hi }
		end
	end
	return function(port)
		if set[port] then
			return true
		end
		for _, r in ipairs(ranges) do
			if port >= r[1] and port <= r[2] then
				return true
			end
		end
		return false
	end
end

local function dev_matcher(v)
	local exact, prefixes = {}, {}
	for _, d in ipairs(list(v)) do
		d = tostring(d)
		if d:sub(-1) == "+" then
			prefixes[#prefixes + 1] = d:sub(1, -2)
		else
			exact[d] = true
		end
	end
	return function(dev)
		if not dev then
			return false
		end
		if exact[dev] then
			return true
		end
		for _, p in ipairs(prefixes) do
			if dev:sub(1, #p) == p then
				return true
			end
		end
		return false
	end
end

local known = { name = 1, mark = 1, proto = 1, dport = 1, sport = 1, src = 1, dst = 1, indev = 1, outdev = 1, family = 1, offload = 1 }

-- compile turns one rule table into {name=, mark=, ct=, test=function(pkt)}.
local function compile(i, r)
	if type(r) ~= "table" then
		fail(i, "must be a table")
	end
	for k in pairs(r) do
		if not known[k] then
			fail(i, "unknown field " .. tostring(k))
		end
	end
	if r.mark == nil then
		fail(i, "mark is missing")
	end
	local mark = u32(r.mark, "rule " .. i .. " mark")
	if has_bits_outside(mark, mask) then
		fail(i, string.format("mark 0x%x has bits outside mask 0x%x", mark, mask))
	end
	local tests = {}
	if r.proto ~= nil then
		local names = { [1] = "icmp", [6] = "tcp", [17] = "udp", [58] = "icmpv6" }
		local p = names[r.proto] or r.proto
		tests[#tests + 1] = function(pkt)
			return pkt.proto == p
		end
	end
	if r.family ~= nil then
		local f = r.family
		tests[#tests + 1] = function(pkt)
			return pkt.family == f
		end
	end
	for _, field in ipairs({ "dport", "sport" }) do
		if r[field] ~= nil then
			local m = port_matcher(i, r[field])
			tests[#tests + 1] = function(pkt)
				local proto = pkt.proto
				return (proto == "tcp" or proto == "udp") and m(pkt[field])
			end
		end
	end
	for _, field in ipairs({ "src", "dst" }) do
		if r[field] ~= nil then
			local s = net.set(list(r[field]))
			tests[#tests + 1] = function(pkt)
				local a = pkt[field]
				return a ~= nil and s:contains(a)
			end
		end
	end
	for _, field in ipairs({ "indev", "outdev" }) do
		if r[field] ~= nil then
			local m = dev_matcher(r[field])
			tests[#tests + 1] = function(pkt)
				return m(pkt[field])
			end
		end
	end
	local ct = mark
	if offload_mark ~= 0 and r.offload ~= false then
		ct = mark + offload_mark -- disjoint bits: the sum is the or
	end
	return {
		name = r.name and tostring(r.name) or ("class" .. i),
		mark = mark,
		ct = ct,
		test = function(pkt)
			for t = 1, #tests do
				if not tests[t](pkt) then
					return false
				end
			end
			return true
		end,
	}
end

local rules = {}
for i, r in ipairs(O.rules) do
	rules[i] = compile(i, r)
end
local ct_mask = mask + offload_mark
if #rules == 0 and not default and state.counter("classify:" .. fw.plugin .. ":warned"):incr() == 1 then
	log.warn("classify has no rules: set options.rules")
end

fw.register{
	name = "classify",
	hook = O.hooks,
	priority = O.priority,
	fn = function(pkt)
		local st = pkt.ct.state
		if st ~= "new" and st ~= nil then
			if restore then
				local m = pkt.ct.mark
				if m and m ~= 0 then
					pkt:set_mark(m, mask)
				end
			end
			return
		end
		-- A new connection; or, without conntrack (st == nil), any packet:
		-- then only the packet mark means anything.
		for i = 1, #rules do
			local r = rules[i]
			if r.test(pkt) then
				if st then
					pkt.ct:set_mark(r.ct, ct_mask)
				end
				if packet_mark or not st then
					pkt:set_mark(r.mark, mask)
				end
				pkt:tag(r.name)
				return
			end
		end
		if default then
			if st then
				pkt.ct:set_mark(default, mask)
			end
			if packet_mark or not st then
				pkt:set_mark(default, mask)
			end
		end
	end,
}

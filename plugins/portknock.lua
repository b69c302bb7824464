-- portknock: open a port for a source only after it knocked a sequence.
--
-- New connections to the protected port(s) are blocked unless the source
-- has just "knocked": sent a connection attempt (a TCP SYN, or any UDP
-- datagram) to each port of `sequence`, in order, at most `step_timeout`
-- seconds apart. After the last knock the protected ports accept new
-- connections from that source for `open_for` seconds; connections opened
-- in that window stay up after it closes (only new connections are
-- checked). A knock on a sequence port out of order resets the source's
-- progress (knocking the first port again restarts it); a repeat of the
-- port just knocked (a retransmitted SYN) is ignored, and traffic to other
-- ports does not count. The knock packets themselves are dropped
-- (drop_knocks), so a scanner sees nothing on those ports.
--
-- Options (defaults):
--   sequence     = {7000, 8000, 9000}  knock ports, in order; an entry may name its protocol: "7000/udp"
--   proto        = "tcp"               protocol of entries that do not name one
--   protect      = 22                  port(s) opened by the knock (a number or a list)
--   protect_proto = "tcp"              their protocol
--   open_for     = 30                  seconds the protected ports stay open after the last knock
--   step_timeout = 10                  seconds allowed between two knocks
--   drop_knocks  = true                drop the knock packets
--   action       = "drop"              what blocked connections get: "drop" or "reject"
--   allow        = {}                  addresses or CIDRs always let through
--   hooks        = {"input"}           add "forward" to guard hosts behind a router
--   priority     = "filter"
--   log          = true                log a line when a source opens the port
--
-- The example sequence is public: set your own. Without conntrack a TCP
-- SYN without ACK counts as a new connection and other TCP packets pass;
-- UDP protected ports then only work while the window is open.
--
-- Example (luafw config):
--   plugins:
--     - file: plugins/portknock.lua
--       options:
--         sequence: [7113, "5111/udp", 9001]
--         protect: 22
--         open_for: 20
--         step_timeout: 5

local O = fw.schema{
	sequence = { type = "list", default = { 7000, 8000, 9000 }, doc = "knock ports, in order; an entry may name its protocol: \"7000/udp\"" },
	proto = { type = "string", default = "tcp", doc = "protocol of entries that do not name one" },
	protect = { type = "ports", default = 22, doc = "port(s) opened by the knock" },
	protect_proto = { type = "string", default = "tcp", doc = "their protocol" },
	open_for = { type = "number", default = 30, min = 0, doc = "seconds the protected ports stay open after the last knock" },
	step_timeout = { type = "number", default = 10, min = 0, doc = "seconds allowed between two knocks" },
	drop_knocks = { type = "boolean", default = true, doc = "drop the knock packets" },
	action = { type = "string", default = "drop", values = { "drop", "reject" }, doc = "what blocked connections get" },
	allow = { type = "cidrs", doc = "addresses or CIDRs always let through" },
	hooks = { type = "hooks", default = { "input" }, doc = "hooks to run on" },
	priority = { type = "priority", default = "filter", doc = "where in the hook" },
	log = { type = "boolean", default = true, doc = "log a line when a source opens the port" },
}

local list = fw.list

local function check_proto(p, name)
	if p ~= "tcp" and p ~= "udp" then
		error(string.format("%s: option %s: protocol must be tcp or udp, not %s", fw.plugin, name, tostring(p)), 0)
	end
	return p
end

local default_proto = check_proto(O.proto, "proto")

-- The sequence as "proto/port" keys, in order.
local using_default = fw.options.sequence == nil
local sequence = {}
local knock_ports = {}
for i, e in ipairs(list(O.sequence)) do
	local port, p = tostring(e):match("^%s*(%d+)%s*/?%s*(%a*)%s*$")
	port = tonumber(port)
	if not port or port < 1 or port > 65535 then
		error(string.format("%s: option sequence: entry %d (%s) is not a port", fw.plugin, i, tostring(e)), 0)
	end
	if p == "" then
		p = default_proto
	end
	local key = check_proto(p, "sequence") .. "/" .. port
	sequence[i] = key
	knock_ports[key] = true
end
if #sequence == 0 then
	error(fw.plugin .. ": option sequence is empty", 0)
end

local protect_proto = check_proto(O.protect_proto, "protect_proto")
local protect = {}
for _, p in ipairs(list(O.protect)) do
	local key = protect_proto .. "/" .. tostring(tonumber(p))
	if knock_ports[key] then
		error(fw.plugin .. ": port " .. key .. " is both protected and a knock port", 0)
	end
	protect[key] = true
end

local open_for = O.open_for
local step_timeout = O.step_timeout
local drop_knocks = O.drop_knocks
local actions = { drop = fw.DROP, reject = fw.REJECT }
local verdict = actions[O.action]
if not verdict then
	error(fw.plugin .. ": option action must be drop or reject", 0)
end
local allow = nil
if O.allow then
	allow = net.set(list(O.allow))
end
local log_open = O.log

-- The top level runs once per worker: warn once per engine.
if using_default and state.counter("portknock:" .. fw.plugin .. ":warned"):incr() == 1 then
	log.warn("portknock: using the example knock sequence; set options.sequence to your own", { sequence = table.concat(sequence, " ") })
end

local progress = state.map("portknock:" .. fw.plugin .. ":progress") -- src -> knocks done
local open = state.map("portknock:" .. fw.plugin .. ":open") -- src -> true while open

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

-- knock handles a packet to a sequence port.
local function knock(_, key, src)
	local done = progress:get(src) or 0
	if key == sequence[done + 1] then
		done = done + 1
		if done == #sequence then
			progress:delete(src)
			open:set(src, true, open_for)
			if log_open then
				log.info("port knock completed", { src = src, seconds = open_for })
			end
		else
			progress:set(src, done, step_timeout)
		end
	elseif done > 0 and key == sequence[done] then
		-- the same knock again (a retransmission): neither progress nor reset
		progress:set(src, done, step_timeout)
	elseif key == sequence[1] then
		progress:set(src, 1, step_timeout)
	else
		progress:delete(src)
	end
end

-- Only the knock and protected ports reach the plugin (knocks in any
-- conntrack state: a second UDP knock from the same port is established).
local match_protos, match_ports = {}, {}
for _, set in ipairs({ knock_ports, protect }) do
	for key in pairs(set) do
		local p, port = key:match("^(%a+)/(%d+)$")
		match_protos[p], match_ports[tonumber(port)] = true, true
	end
end
fw.register{
	name = "portknock",
	hook = O.hooks,
	priority = O.priority,
	match = { proto = fw.keys(match_protos), dport = fw.keys(match_ports) },
	fn = function(pkt)
		local p = pkt.proto
		if p ~= "tcp" and p ~= "udp" then
			return
		end
		local src = pkt.src
		if not src then
			return
		end
		local key = p .. "/" .. pkt.dport
		if knock_ports[key] then
			-- A knock is a connection attempt: a SYN, or any UDP datagram.
			if p == "udp" or (pkt.tcp.syn and not pkt.tcp.ack) then
				knock(pkt, key, src)
				if drop_knocks then
					return fw.DROP
				end
			end
			return
		end
		if not protect[key] or not is_new(pkt) then
			return
		end
		if open:get(src) or (allow and allow:contains(src)) then
			return
		end
		return verdict
	end,
}

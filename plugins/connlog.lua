-- connlog: one structured log line per new connection.
--
-- Logs each connection's first packet (conntrack state "new") with the
-- fields src, dst, sport, dport (TCP, UDP and SCTP), proto, indev, outdev,
-- hook, and uid for locally generated traffic when known; icmp_type for
-- ICMP. It never changes a verdict. By default it runs on input, forward
-- and output, which each connection passes exactly one of, so a
-- connection is logged once; and at the filter priority, like the other
-- shipped plugins (one diversion serves them all): list it last in the
-- configuration so connections an earlier plugin dropped are not logged.
-- Without conntrack, TCP SYNs (without ACK) count as new connections and
-- other protocols are not logged.
--
-- The engine rate-limits every plugin's log lines (20 a second, bursts of
-- 100): under a connection flood lines are dropped and the next line
-- written says how many ("suppressed"). With `luafw run --log-format json`
-- each line is a JSON object, ready for a log shipper.
--
-- Options (defaults):
--   level    = "info"                          "debug", "info", "warn" or "error"
--   message  = "connection"                    the log message
--   protos   = nil                             only these protocols (e.g. {"tcp", "udp"}); nil = all
--   hooks    = {"input", "forward", "output"}
--   priority = "filter"
--
-- Example (luafw config):
--   plugins:
--     - file: plugins/connlog.lua
--       options:
--         protos: [tcp, udp]
--         message: new connection

local O = fw.schema{
	level = { type = "string", default = "info", values = { "debug", "info", "warn", "error" }, doc = "the log level" },
	message = { type = "string", default = "connection", doc = "the log message" },
	protos = { type = "strings", doc = "only these protocols (e.g. {\"tcp\", \"udp\"}); none: all" },
	hooks = { type = "hooks", default = { "input", "forward", "output" }, doc = "hooks to run on" },
	priority = { type = "priority", default = "filter", doc = "where in the hook" },
}

local levels = { debug = log.debug, info = log.info, warn = log.warn, error = log.error }
local emit = levels[O.level]
if not emit then
	error(fw.plugin .. ": option level must be debug, info, warn or error", 0)
end
local message = O.message
local protos = nil
if O.protos ~= nil then
	protos = {}
	local v = O.protos
	if type(v) ~= "table" then
		v = { v }
	end
	for _, p in ipairs(v) do
		protos[p] = true
	end
end

local has_ports = { tcp = true, udp = true, [132] = true }

local function is_new(pkt)
	local st = pkt.ct.state
	if st then
		return st == "new"
	end
	return pkt.proto == "tcp" and pkt.tcp.syn and not pkt.tcp.ack
end

fw.register{
	name = "connlog",
	hook = O.hooks,
	priority = O.priority,
	-- Without conntrack the state is unknown and every packet comes here
	-- (is_new then looks at the TCP flags).
	match = { ct_state = "new" },
	fn = function(pkt)
		if not is_new(pkt) then
			return
		end
		local proto = pkt.proto
		if protos and not protos[proto] then
			return
		end
		local f = {
			src = pkt.src,
			dst = pkt.dst,
			proto = proto,
			indev = pkt.indev,
			outdev = pkt.outdev,
			hook = pkt.hook,
		}
		if has_ports[proto] then
			f.sport = pkt.sport
			f.dport = pkt.dport
		elseif proto == "icmp" or proto == "icmpv6" then
			f.icmp_type = pkt.icmp_type
		end
		local uid = pkt.uid
		if uid then
			f.uid = uid
		end
		emit(message, f)
	end,
}

-- accept: the benchmark's trivial plugin. It accepts every forwarded packet
-- without looking at it, so a benchmark row with it measures what luafw
-- itself costs per packet (queue, engine, one Lua call, verdict).
fw.register{
	name = "accept",
	hook = "forward",
	fn = function(pkt)
		return fw.ACCEPT
	end,
}

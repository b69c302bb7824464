-- rewrite: the benchmark's rewriting plugin. It rewrites the payload of
-- every forwarded UDP packet (upper-cased, same length), so a row with it
-- measures what a rewrite costs beside the trivial plugin: the copy, the
-- checksums, and the verdict carrying the packet back to the kernel.
fw.register{
	name = "rewrite",
	hook = "forward",
	fn = function(pkt)
		if pkt.proto == "udp" then
			pkt:set_payload(string.upper(pkt.payload))
		end
		return fw.ACCEPT
	end,
}

package ct

import "encoding/binary"

// PacketsOf reads a queued packet's connection packet count, both
// directions (CTA_COUNTERS_ORIG and CTA_COUNTERS_REPLY, each a nest with
// CTA_COUNTERS_PACKETS), from its NFQA_CT nest: what nftables' `ct packets`
// compares. The kernel sends the counters only while conntrack accounting
// is on in the namespace (nf_conntrack_acct, which loading a `ct packets`
// rule turns on). ok is false when the nest has none or is malformed.
func PacketsOf(nest []byte) (packets uint64, ok bool) {
	const ctaCountersOrig, ctaCountersReply, ctaCountersPackets = 9, 10, 1
	attrs(nest, func(typ uint16, data []byte) {
		if typ != ctaCountersOrig && typ != ctaCountersReply {
			return
		}
		attrs(data, func(typ uint16, data []byte) {
			if typ == ctaCountersPackets && len(data) == 8 {
				packets += binary.BigEndian.Uint64(data)
				ok = true
			}
		})
	})
	return packets, ok
}

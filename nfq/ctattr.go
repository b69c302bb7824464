package nfq

import "encoding/binary"

// Conntrack info of a queued packet (enum ip_conntrack_info), as NFQA_CT_INFO
// carries it when the kernel grants NFQA_CFG_F_CONNTRACK.
const (
	CTInfoEstablished      = 0
	CTInfoRelated          = 1
	CTInfoNew              = 2
	CTInfoEstablishedReply = 3
	CTInfoRelatedReply     = 4
	CTInfoUntracked        = 7
)

// CTStateOf maps NFQA_CT_INFO to the per-state index CTNew..CTUntracked.
func CTStateOf(info uint32) int {
	switch info {
	case CTInfoNew:
		return CTNew
	case CTInfoEstablished, CTInfoEstablishedReply:
		return CTEstablished
	case CTInfoRelated, CTInfoRelatedReply:
		return CTRelated
	case CTInfoUntracked:
		return CTUntracked
	}
	return CTInvalid
}

// CTMarkOf reads the conntrack mark (CTA_MARK) from a packet's NFQA_CT nest.
// ok is false when the nest has none or is malformed.
func CTMarkOf(nest []byte) (mark uint32, ok bool) {
	const ctaMarkAttr = 8
	for len(nest) >= 4 {
		n := int(binary.NativeEndian.Uint16(nest[0:2]))
		typ := binary.NativeEndian.Uint16(nest[2:4]) & 0x3fff // without NLA_F_NESTED / NLA_F_NET_BYTEORDER
		if n < 4 || n > len(nest) {
			return 0, false
		}
		if typ == ctaMarkAttr && n >= 8 {
			return binary.BigEndian.Uint32(nest[4:8]), true
		}
		next := (n + 3) &^ 3
		if next > len(nest) {
			return 0, false
		}
		nest = nest[next:]
	}
	return 0, false
}

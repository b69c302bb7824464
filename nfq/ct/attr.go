package ct

import (
	"encoding/binary"

	"github.com/luafw/luafw/netfilter"
)

// Conntrack info of a queued packet (enum ip_conntrack_info), as NFQA_CT_INFO
// carries it when the kernel grants NFQA_CFG_F_CONNTRACK.
const (
	InfoEstablished      = 0
	InfoRelated          = 1
	InfoNew              = 2
	InfoEstablishedReply = 3
	InfoRelatedReply     = 4
	InfoUntracked        = 7
)

// StateOf maps NFQA_CT_INFO to the packet's conntrack state.
func StateOf(info uint32) netfilter.CTState {
	switch info {
	case InfoNew:
		return netfilter.CTNew
	case InfoEstablished, InfoEstablishedReply:
		return netfilter.CTEstablished
	case InfoRelated, InfoRelatedReply:
		return netfilter.CTRelated
	case InfoUntracked:
		return netfilter.CTUntracked
	}
	return netfilter.CTInvalid
}

// MarkOf reads the conntrack mark (CTA_MARK) from a packet's NFQA_CT nest.
// ok is false when the nest has none or is malformed.
func MarkOf(nest []byte) (mark uint32, ok bool) {
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

package queue

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/luafw/luafw/netfilter"
)

// Wire format of nfnetlink_queue (include/uapi/linux/netfilter/nfnetlink_queue.h).
// go-nfqueue keeps these unexported, so they are restated here with the
// kernel's names in the comments.
const (
	nlmsgHdrLen = unix.SizeofNlMsghdr // struct nlmsghdr
	nfgenLen    = 4                   // struct nfgenmsg
	nlaHdrLen   = unix.SizeofNlAttr   // struct nlattr
	nlaTypeMask = 0x3fff              // NLA_TYPE_MASK (strips NLA_F_NESTED, NLA_F_NET_BYTEORDER)

	msgPacket  = unix.NFNL_SUBSYS_QUEUE << 8   // NFQNL_MSG_PACKET (0)
	msgVerdict = unix.NFNL_SUBSYS_QUEUE<<8 | 1 // NFQNL_MSG_VERDICT
	msgConfig  = unix.NFNL_SUBSYS_QUEUE<<8 | 2 // NFQNL_MSG_CONFIG

	attrPacketHdr  = 1  // NFQA_PACKET_HDR: be32 id, be16 hw_protocol, u8 hook
	attrVerdictHdr = 2  // NFQA_VERDICT_HDR: be32 verdict, be32 id
	attrMark       = 3  // NFQA_MARK
	attrInDev      = 5  // NFQA_IFINDEX_INDEV
	attrOutDev     = 6  // NFQA_IFINDEX_OUTDEV
	attrPayload    = 10 // NFQA_PAYLOAD
	attrCT         = 11 // NFQA_CT (nested ctnetlink attributes)
	attrCTInfo     = 12 // NFQA_CT_INFO
	attrCapLen     = 13 // NFQA_CAP_LEN
	attrSkbInfo    = 14 // NFQA_SKB_INFO
	attrUID        = 16 // NFQA_UID
	attrGID        = 17 // NFQA_GID

	cfgCmd      = 1 // NFQA_CFG_CMD: u8 command, u8 pad, be16 pf
	cfgParams   = 2 // NFQA_CFG_PARAMS: be32 copy_range, u8 copy_mode
	cfgQueueLen = 3 // NFQA_CFG_QUEUE_MAXLEN
	cfgMask     = 4 // NFQA_CFG_MASK
	cfgFlags    = 5 // NFQA_CFG_FLAGS

	cmdBind   = 1 // NFQNL_CFG_CMD_BIND
	cmdUnbind = 2 // NFQNL_CFG_CMD_UNBIND

	// verdictLen is the size of one verdict message without mark or payload;
	// markLen is what a mark attribute adds.
	verdictLen = nlmsgHdrLen + nfgenLen + nlaHdrLen + 8
	markLen    = nlaHdrLen + 4
)

// SkbInfo bits of Msg.SkbInfo (NFQA_SKB_*).
const (
	SkbCsumNotReady    = 1 << 0 // checksum not computed yet (offloaded); do not verify it
	SkbGSO             = 1 << 1 // a GSO super-packet (only with Config.GSO)
	SkbCsumNotVerified = 1 << 2 // checksum was not verified by hardware or stack
)

var (
	errQTruncated = errors.New("netlink message truncated")
	errQNoHeader  = errors.New("packet message without NFQA_PACKET_HDR")
)

func align(n int) int { return (n + 3) &^ 3 }

// nextMsg splits the first netlink message off a datagram. It returns the
// message type, the message (header included), the rest of the datagram and
// whether a well-formed message was found.
func nextMsg(b []byte) (typ uint16, msg, rest []byte, err error) {
	if len(b) < nlmsgHdrLen {
		return 0, nil, nil, fmt.Errorf("%d bytes left for a netlink header: %w", len(b), errQTruncated)
	}
	l := int(binary.NativeEndian.Uint32(b[0:4]))
	if l < nlmsgHdrLen || l > len(b) {
		return 0, nil, nil, fmt.Errorf("netlink length %d with %d bytes left: %w", l, len(b), errQTruncated)
	}
	typ = binary.NativeEndian.Uint16(b[4:6])
	next := align(l)
	if next > len(b) {
		next = len(b)
	}
	return typ, b[:l], b[next:], nil
}

// errnoOf returns the error code of an NLMSG_ERROR message (0 for an ack).
func errnoOf(msg []byte) (unix.Errno, uint32, bool) {
	if len(msg) < nlmsgHdrLen+4 {
		return 0, 0, false
	}
	code := int32(binary.NativeEndian.Uint32(msg[nlmsgHdrLen:]))
	var seq uint32
	if len(msg) >= nlmsgHdrLen+4+nlmsgHdrLen {
		// The original request header follows the error code.
		seq = binary.NativeEndian.Uint32(msg[nlmsgHdrLen+4+8:])
	}
	return unix.Errno(-code), seq, true
}

// parsePacket fills m from one NFQNL_MSG_PACKET message (header included).
// It does not allocate: Payload and CT point into msg.
func parsePacket(msg []byte, m *Msg) error {
	if len(msg) < nlmsgHdrLen+nfgenLen {
		return fmt.Errorf("packet message of %d bytes: %w", len(msg), errQTruncated)
	}
	*m = Msg{Queue: binary.BigEndian.Uint16(msg[nlmsgHdrLen+2:])}
	b := msg[nlmsgHdrLen+nfgenLen:]
	haveHdr := false
	for len(b) >= nlaHdrLen {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		if l < nlaHdrLen || l > len(b) {
			return fmt.Errorf("attribute length %d with %d bytes left: %w", l, len(b), errQTruncated)
		}
		d := b[nlaHdrLen:l]
		switch binary.NativeEndian.Uint16(b[2:4]) & nlaTypeMask {
		case attrPacketHdr:
			if len(d) >= 7 {
				m.ID = binary.BigEndian.Uint32(d[0:4])
				m.HWProto = binary.BigEndian.Uint16(d[4:6])
				m.Hook = netfilter.Hook(d[6])
				haveHdr = true
			}
		case attrMark:
			m.Mark = be32(d)
		case attrInDev:
			m.InDev = be32(d)
		case attrOutDev:
			m.OutDev = be32(d)
		case attrPayload:
			m.Payload = d
		case attrCT:
			m.CT = d
		case attrCTInfo:
			m.CTInfo = be32(d)
			m.HasCT = true
		case attrCapLen:
			m.CapLen = be32(d)
		case attrSkbInfo:
			m.SkbInfo = be32(d)
		case attrUID:
			m.UID = be32(d)
			m.HasUID = true
		case attrGID:
			m.GID = be32(d)
		}
		n := align(l)
		if n > len(b) {
			n = len(b)
		}
		b = b[n:]
	}
	if !haveHdr {
		return errQNoHeader
	}
	if m.CapLen == 0 {
		m.CapLen = uint32(len(m.Payload))
	}
	return nil
}

func be32(d []byte) uint32 {
	if len(d) < 4 {
		return 0
	}
	return binary.BigEndian.Uint32(d)
}

// verdictSize is the number of bytes appendVerdict adds for v.
func verdictSize(v *Verdict) int {
	n := verdictLen
	if v.SetMark {
		n += markLen
	}
	if len(v.Payload) > 0 {
		n += align(nlaHdrLen + len(v.Payload))
	}
	return n
}

// appendVerdict appends one NFQNL_MSG_VERDICT message (no ack requested).
func appendVerdict(b []byte, queue uint16, id uint32, v *Verdict, seq uint32) []byte {
	size := verdictSize(v)
	off := len(b)
	b = grow(b, size)
	w := b[off : off+size]
	ne := binary.NativeEndian
	ne.PutUint32(w[0:], uint32(size))
	ne.PutUint16(w[4:], msgVerdict)
	ne.PutUint16(w[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(w[8:], seq)
	ne.PutUint32(w[12:], 0)
	w[16] = unix.AF_UNSPEC
	w[17] = unix.NFNETLINK_V0
	binary.BigEndian.PutUint16(w[18:], queue)
	ne.PutUint16(w[20:], nlaHdrLen+8)
	ne.PutUint16(w[22:], attrVerdictHdr)
	binary.BigEndian.PutUint32(w[24:], v.Verdict)
	binary.BigEndian.PutUint32(w[28:], id)
	p := verdictLen
	if v.SetMark {
		ne.PutUint16(w[p:], markLen)
		ne.PutUint16(w[p+2:], attrMark)
		binary.BigEndian.PutUint32(w[p+4:], v.Mark)
		p += markLen
	}
	if len(v.Payload) > 0 {
		ne.PutUint16(w[p:], uint16(nlaHdrLen+len(v.Payload)))
		ne.PutUint16(w[p+2:], attrPayload)
		n := copy(w[p+nlaHdrLen:], v.Payload)
		clear(w[p+nlaHdrLen+n:])
	}
	return b
}

// grow extends b by n bytes, reallocating only when the capacity is short.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), 2*cap(b)+n)
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}

// configAttr is one attribute of a config message.
type configAttr struct {
	typ  uint16
	data []byte
}

// configMsg builds an NFQNL_MSG_CONFIG request for queue with an ack requested.
func configMsg(queue uint16, seq uint32, attrs ...configAttr) []byte {
	size := nlmsgHdrLen + nfgenLen
	for _, a := range attrs {
		size += align(nlaHdrLen + len(a.data))
	}
	b := make([]byte, size)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(size))
	ne.PutUint16(b[4:], msgConfig)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	ne.PutUint32(b[8:], seq)
	b[16] = unix.AF_UNSPEC
	b[17] = unix.NFNETLINK_V0
	binary.BigEndian.PutUint16(b[18:], queue)
	p := nlmsgHdrLen + nfgenLen
	for _, a := range attrs {
		ne.PutUint16(b[p:], uint16(nlaHdrLen+len(a.data)))
		ne.PutUint16(b[p+2:], a.typ)
		copy(b[p+nlaHdrLen:], a.data)
		p += align(nlaHdrLen + len(a.data))
	}
	return b
}

func be32Bytes(v uint32) []byte {
	return binary.BigEndian.AppendUint32(nil, v)
}

// cmdAttr is NFQA_CFG_CMD for command cmd (the protocol family is unused
// by kernels since 3.8 and left 0).
func cmdAttr(cmd uint8) configAttr {
	return configAttr{typ: cfgCmd, data: []byte{cmd, 0, 0, 0}}
}

// paramsAttr is NFQA_CFG_PARAMS: copy range and copy mode.
func paramsAttr(copyRange uint32, mode uint8) configAttr {
	return configAttr{typ: cfgParams, data: append(be32Bytes(copyRange), mode)}
}

// peekPacketID reads the queue and packet id from the start of a packet
// message that may be cut short (the kernel puts NFQA_PACKET_HDR first).
func peekPacketID(b []byte) (queue uint16, id uint32, ok bool) {
	const need = nlmsgHdrLen + nfgenLen + nlaHdrLen + 7
	if len(b) < need || binary.NativeEndian.Uint16(b[4:6]) != msgPacket {
		return 0, 0, false
	}
	a := b[nlmsgHdrLen+nfgenLen:]
	if binary.NativeEndian.Uint16(a[2:4])&nlaTypeMask != attrPacketHdr || binary.NativeEndian.Uint16(a[0:2]) < nlaHdrLen+7 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint16(b[nlmsgHdrLen+2:]), binary.BigEndian.Uint32(a[nlaHdrLen:]), true
}

package nfq

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Wire format of nfnetlink_queue (include/uapi/linux/netfilter/nfnetlink_queue.h).
// go-nfqueue keeps these unexported, so they are restated here with the
// kernel's names in the comments.
const (
	qNlmsgHdrLen = unix.SizeofNlMsghdr // struct nlmsghdr
	qNfgenLen    = 4                   // struct nfgenmsg
	qNlaHdrLen   = unix.SizeofNlAttr   // struct nlattr
	qNlaTypeMask = 0x3fff              // NLA_TYPE_MASK (strips NLA_F_NESTED, NLA_F_NET_BYTEORDER)

	qMsgPacket  = unix.NFNL_SUBSYS_QUEUE << 8   // NFQNL_MSG_PACKET (0)
	qMsgVerdict = unix.NFNL_SUBSYS_QUEUE<<8 | 1 // NFQNL_MSG_VERDICT
	qMsgConfig  = unix.NFNL_SUBSYS_QUEUE<<8 | 2 // NFQNL_MSG_CONFIG

	qAttrPacketHdr  = 1  // NFQA_PACKET_HDR: be32 id, be16 hw_protocol, u8 hook
	qAttrVerdictHdr = 2  // NFQA_VERDICT_HDR: be32 verdict, be32 id
	qAttrMark       = 3  // NFQA_MARK
	qAttrInDev      = 5  // NFQA_IFINDEX_INDEV
	qAttrOutDev     = 6  // NFQA_IFINDEX_OUTDEV
	qAttrPayload    = 10 // NFQA_PAYLOAD
	qAttrCT         = 11 // NFQA_CT (nested ctnetlink attributes)
	qAttrCTInfo     = 12 // NFQA_CT_INFO
	qAttrCapLen     = 13 // NFQA_CAP_LEN
	qAttrSkbInfo    = 14 // NFQA_SKB_INFO
	qAttrUID        = 16 // NFQA_UID
	qAttrGID        = 17 // NFQA_GID

	qCfgCmd      = 1 // NFQA_CFG_CMD: u8 command, u8 pad, be16 pf
	qCfgParams   = 2 // NFQA_CFG_PARAMS: be32 copy_range, u8 copy_mode
	qCfgQueueLen = 3 // NFQA_CFG_QUEUE_MAXLEN
	qCfgMask     = 4 // NFQA_CFG_MASK
	qCfgFlags    = 5 // NFQA_CFG_FLAGS

	qCmdBind   = 1 // NFQNL_CFG_CMD_BIND
	qCmdUnbind = 2 // NFQNL_CFG_CMD_UNBIND

	// qVerdictLen is the size of one verdict message without mark or payload;
	// qMarkLen is what a mark attribute adds.
	qVerdictLen = qNlmsgHdrLen + qNfgenLen + qNlaHdrLen + 8
	qMarkLen    = qNlaHdrLen + 4
)

// SkbInfo bits of Msg.SkbInfo (NFQA_SKB_*).
const (
	SkbCsumNotReady    = 1 << 0 // checksum not computed yet (offloaded); do not verify it
	SkbGSO             = 1 << 1 // a GSO super-packet (only with QueueConfig.GSO)
	SkbCsumNotVerified = 1 << 2 // checksum was not verified by hardware or stack
)

var (
	errQTruncated = errors.New("netlink message truncated")
	errQNoHeader  = errors.New("packet message without NFQA_PACKET_HDR")
)

func qAlign(n int) int { return (n + 3) &^ 3 }

// qNextMsg splits the first netlink message off a datagram. It returns the
// message type, the message (header included), the rest of the datagram and
// whether a well-formed message was found.
func qNextMsg(b []byte) (typ uint16, msg, rest []byte, err error) {
	if len(b) < qNlmsgHdrLen {
		return 0, nil, nil, fmt.Errorf("%d bytes left for a netlink header: %w", len(b), errQTruncated)
	}
	l := int(binary.NativeEndian.Uint32(b[0:4]))
	if l < qNlmsgHdrLen || l > len(b) {
		return 0, nil, nil, fmt.Errorf("netlink length %d with %d bytes left: %w", l, len(b), errQTruncated)
	}
	typ = binary.NativeEndian.Uint16(b[4:6])
	next := qAlign(l)
	if next > len(b) {
		next = len(b)
	}
	return typ, b[:l], b[next:], nil
}

// qErrno returns the error code of an NLMSG_ERROR message (0 for an ack).
func qErrno(msg []byte) (unix.Errno, uint32, bool) {
	if len(msg) < qNlmsgHdrLen+4 {
		return 0, 0, false
	}
	code := int32(binary.NativeEndian.Uint32(msg[qNlmsgHdrLen:]))
	var seq uint32
	if len(msg) >= qNlmsgHdrLen+4+qNlmsgHdrLen {
		// The original request header follows the error code.
		seq = binary.NativeEndian.Uint32(msg[qNlmsgHdrLen+4+8:])
	}
	return unix.Errno(-code), seq, true
}

// qParsePacket fills m from one NFQNL_MSG_PACKET message (header included).
// It does not allocate: Payload and CT point into msg.
func qParsePacket(msg []byte, m *Msg) error {
	if len(msg) < qNlmsgHdrLen+qNfgenLen {
		return fmt.Errorf("packet message of %d bytes: %w", len(msg), errQTruncated)
	}
	*m = Msg{Queue: binary.BigEndian.Uint16(msg[qNlmsgHdrLen+2:])}
	b := msg[qNlmsgHdrLen+qNfgenLen:]
	haveHdr := false
	for len(b) >= qNlaHdrLen {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		if l < qNlaHdrLen || l > len(b) {
			return fmt.Errorf("attribute length %d with %d bytes left: %w", l, len(b), errQTruncated)
		}
		d := b[qNlaHdrLen:l]
		switch binary.NativeEndian.Uint16(b[2:4]) & qNlaTypeMask {
		case qAttrPacketHdr:
			if len(d) >= 7 {
				m.ID = binary.BigEndian.Uint32(d[0:4])
				m.HWProto = binary.BigEndian.Uint16(d[4:6])
				m.Hook = d[6]
				haveHdr = true
			}
		case qAttrMark:
			m.Mark = qBE32(d)
		case qAttrInDev:
			m.InDev = qBE32(d)
		case qAttrOutDev:
			m.OutDev = qBE32(d)
		case qAttrPayload:
			m.Payload = d
		case qAttrCT:
			m.CT = d
		case qAttrCTInfo:
			m.CTInfo = qBE32(d)
			m.HasCT = true
		case qAttrCapLen:
			m.CapLen = qBE32(d)
		case qAttrSkbInfo:
			m.SkbInfo = qBE32(d)
		case qAttrUID:
			m.UID = qBE32(d)
			m.HasUID = true
		case qAttrGID:
			m.GID = qBE32(d)
		}
		n := qAlign(l)
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

func qBE32(d []byte) uint32 {
	if len(d) < 4 {
		return 0
	}
	return binary.BigEndian.Uint32(d)
}

// qVerdictSize is the number of bytes qAppendVerdict adds for v.
func qVerdictSize(v *Verdict) int {
	n := qVerdictLen
	if v.SetMark {
		n += qMarkLen
	}
	if len(v.Payload) > 0 {
		n += qAlign(qNlaHdrLen + len(v.Payload))
	}
	return n
}

// qAppendVerdict appends one NFQNL_MSG_VERDICT message (no ack requested).
func qAppendVerdict(b []byte, queue uint16, id uint32, v *Verdict, seq uint32) []byte {
	size := qVerdictSize(v)
	off := len(b)
	b = qGrow(b, size)
	w := b[off : off+size]
	ne := binary.NativeEndian
	ne.PutUint32(w[0:], uint32(size))
	ne.PutUint16(w[4:], qMsgVerdict)
	ne.PutUint16(w[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(w[8:], seq)
	ne.PutUint32(w[12:], 0)
	w[16] = unix.AF_UNSPEC
	w[17] = unix.NFNETLINK_V0
	binary.BigEndian.PutUint16(w[18:], queue)
	ne.PutUint16(w[20:], qNlaHdrLen+8)
	ne.PutUint16(w[22:], qAttrVerdictHdr)
	binary.BigEndian.PutUint32(w[24:], v.Verdict)
	binary.BigEndian.PutUint32(w[28:], id)
	p := qVerdictLen
	if v.SetMark {
		ne.PutUint16(w[p:], qMarkLen)
		ne.PutUint16(w[p+2:], qAttrMark)
		binary.BigEndian.PutUint32(w[p+4:], v.Mark)
		p += qMarkLen
	}
	if len(v.Payload) > 0 {
		ne.PutUint16(w[p:], uint16(qNlaHdrLen+len(v.Payload)))
		ne.PutUint16(w[p+2:], qAttrPayload)
		n := copy(w[p+qNlaHdrLen:], v.Payload)
		clear(w[p+qNlaHdrLen+n:])
	}
	return b
}

// qGrow extends b by n bytes, reallocating only when the capacity is short.
func qGrow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), 2*cap(b)+n)
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}

// qConfigAttr is one attribute of a config message.
type qConfigAttr struct {
	typ  uint16
	data []byte
}

// qConfigMsg builds an NFQNL_MSG_CONFIG request for queue with an ack requested.
func qConfigMsg(queue uint16, seq uint32, attrs ...qConfigAttr) []byte {
	size := qNlmsgHdrLen + qNfgenLen
	for _, a := range attrs {
		size += qAlign(qNlaHdrLen + len(a.data))
	}
	b := make([]byte, size)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(size))
	ne.PutUint16(b[4:], qMsgConfig)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	ne.PutUint32(b[8:], seq)
	b[16] = unix.AF_UNSPEC
	b[17] = unix.NFNETLINK_V0
	binary.BigEndian.PutUint16(b[18:], queue)
	p := qNlmsgHdrLen + qNfgenLen
	for _, a := range attrs {
		ne.PutUint16(b[p:], uint16(qNlaHdrLen+len(a.data)))
		ne.PutUint16(b[p+2:], a.typ)
		copy(b[p+qNlaHdrLen:], a.data)
		p += qAlign(qNlaHdrLen + len(a.data))
	}
	return b
}

func qBE32Bytes(v uint32) []byte {
	return binary.BigEndian.AppendUint32(nil, v)
}

// qCmdAttr is NFQA_CFG_CMD for command cmd (the protocol family is unused
// by kernels since 3.8 and left 0).
func qCmdAttr(cmd uint8) qConfigAttr {
	return qConfigAttr{typ: qCfgCmd, data: []byte{cmd, 0, 0, 0}}
}

// qParamsAttr is NFQA_CFG_PARAMS: copy range and copy mode.
func qParamsAttr(copyRange uint32, mode uint8) qConfigAttr {
	return qConfigAttr{typ: qCfgParams, data: append(qBE32Bytes(copyRange), mode)}
}

// qPeekPacketID reads the queue and packet id from the start of a packet
// message that may be cut short (the kernel puts NFQA_PACKET_HDR first).
func qPeekPacketID(b []byte) (queue uint16, id uint32, ok bool) {
	const need = qNlmsgHdrLen + qNfgenLen + qNlaHdrLen + 7
	if len(b) < need || binary.NativeEndian.Uint16(b[4:6]) != qMsgPacket {
		return 0, 0, false
	}
	a := b[qNlmsgHdrLen+qNfgenLen:]
	if binary.NativeEndian.Uint16(a[2:4])&qNlaTypeMask != qAttrPacketHdr || binary.NativeEndian.Uint16(a[0:2]) < qNlaHdrLen+7 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint16(b[qNlmsgHdrLen+2:]), binary.BigEndian.Uint32(a[qNlaHdrLen:]), true
}

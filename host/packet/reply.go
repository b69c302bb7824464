package packet

import (
	"encoding/binary"
	"errors"
)

// Replies built from a decoded packet: TCP resets to both ends, ICMP errors
// and UDP answers back to the sender. Each is a complete packet with valid
// checksums, ready to be sent through a raw socket.

// ErrNotTCP, ErrNotUDP: the packet is not of the protocol a reply needs.
var (
	ErrNotTCP      = errors.New("not a TCP packet with a complete header")
	ErrNotUDP      = errors.New("not a UDP packet with a complete header")
	ErrNoReplyToRS = errors.New("a reset is never answered")
	ErrICMPError   = errors.New("an ICMP error is never answered with another")
)

const replyTTL = 64

// ResetReplies returns the TCP resets that end the connection of the TCP
// packet b (decoded in p) at both ends, as Linux's own resets do:
//
//   - to the sender, from the receiver's address: when the packet acks,
//     sequence number = its ack (exactly what the sender expects next, so
//     RFC 5961 does not turn the reset into a challenge ACK); when it does
//     not (a SYN), ack = its sequence number plus its length, with ACK set.
//   - to the receiver, from the sender's address, only when the packet
//     acks (a SYN has no connection at the receiver yet): two resets, with
//     the packet's sequence number and with the number after its data, so
//     that one of them is exact whether or not the packet itself is let
//     through (dropped: the receiver expects the first; passed: the second).
func ResetReplies(p *Parsed, b []byte) ([][]byte, error) {
	if p.Proto != ProtoTCP || p.L4Off < 0 || p.PayloadOff < 0 || p.Fragment {
		return nil, ErrNotTCP
	}
	if p.TCPFlags&TCPRst != 0 {
		return nil, ErrNoReplyToRS
	}
	tcp := b[p.L4Off:]
	seq := binary.BigEndian.Uint32(tcp[4:8])
	ack := binary.BigEndian.Uint32(tcp[8:12])
	end := seq + uint32(len(p.Payload(b)))
	if p.TCPFlags&TCPSyn != 0 {
		end++
	}
	if p.TCPFlags&TCPFin != 0 {
		end++
	}
	back := Spec{Src: p.Dst, Dst: p.Src, Proto: ProtoTCP, SrcPort: p.DstPort, DstPort: p.SrcPort, TTL: replyTTL}
	if p.TCPFlags&TCPAck != 0 {
		back.TCPFlags, back.Seq = TCPRst, ack
	} else {
		back.TCPFlags, back.Ack = TCPRst|TCPAck, end
	}
	out := make([][]byte, 0, 3)
	r, err := buildZeroWindow(back)
	if err != nil {
		return nil, err
	}
	out = append(out, r)
	if p.TCPFlags&TCPAck == 0 {
		return out, nil
	}
	seqs := []uint32{seq, end}
	if end == seq {
		seqs = seqs[:1]
	}
	for _, s := range seqs {
		fwd := Spec{Src: p.Src, Dst: p.Dst, Proto: ProtoTCP, SrcPort: p.SrcPort, DstPort: p.DstPort,
			TTL: replyTTL, TCPFlags: TCPRst, Seq: s}
		r, err := buildZeroWindow(fwd)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// buildZeroWindow builds a reset with a zero window, as resets carry.
func buildZeroWindow(s Spec) ([]byte, error) {
	b, err := Build(s)
	if err != nil {
		return nil, err
	}
	var p Parsed
	p.Decode(b)
	binary.BigEndian.PutUint16(b[p.L4Off+14:], 0)
	FixChecksums(&p, b)
	return b, nil
}

// ICMP error quotes: RFC 792 asks for the IP header and 8 bytes; RFC 4443
// for as much as fits in the minimum MTU.
const (
	icmp4Quote = 8
	icmp6Max   = 1280
)

// ICMPErrorReply returns an ICMP (IPv4) or ICMPv6 error of type and code to
// the sender of b, from its destination address, quoting the packet as the
// RFCs ask. ICMP errors are not answered (RFC 1122, RFC 4443).
func ICMPErrorReply(p *Parsed, b []byte, typ, code uint8) ([]byte, error) {
	if p.Family == 0 || p.Err != "" {
		return nil, ErrNotRewritable
	}
	if isICMPError(p) {
		return nil, ErrICMPError
	}
	end := min(len(b), max(p.Len, 0))
	if end == 0 {
		end = len(b)
	}
	s := Spec{Src: p.Dst, Dst: p.Src, TTL: replyTTL, ICMPType: typ, ICMPCode: code}
	if p.Family == 4 {
		s.Proto = ProtoICMP
		ihl := int(b[0]&0x0f) * 4
		s.Payload = b[:min(end, ihl+icmp4Quote)]
	} else {
		s.Proto = ProtoICMPv6
		s.Payload = b[:min(end, icmp6Max-ipv6HeaderLen-icmpHeaderLen)]
	}
	return Build(s)
}

// isICMPError reports whether p is an ICMP or ICMPv6 error message.
func isICMPError(p *Parsed) bool {
	switch p.Proto {
	case ProtoICMP:
		switch p.ICMPType {
		case 3, 4, 5, 11, 12:
			return true
		}
	case ProtoICMPv6:
		return p.ICMPType < 128
	}
	return false
}

// UDPReply returns a UDP datagram carrying payload back to the sender of
// the UDP packet decoded in p: addresses and ports swapped.
func UDPReply(p *Parsed, payload []byte) ([]byte, error) {
	if p.Proto != ProtoUDP || p.L4Off < 0 || p.NonFirstFragment {
		return nil, ErrNotUDP
	}
	return Build(Spec{Src: p.Dst, Dst: p.Src, Proto: ProtoUDP, SrcPort: p.DstPort, DstPort: p.SrcPort,
		TTL: replyTTL, Payload: payload})
}

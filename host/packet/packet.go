// Package packet owns luafw's decoder of IP packets as NFQUEUE delivers them:
// the bytes start at the IPv4 or IPv6 header, with no link layer.
//
// [Parsed.Decode] fills a [Parsed] without allocating and never panics,
// whatever the input: truncated buffers, malformed headers and length fields
// that lie are reported through Parsed.Truncated and Parsed.Err. The package
// also builds valid packets ([Build]) for tests, tools and injection, rewrites
// decoded packets in place ([SetPayload], [SetTTL], [ClampMSS], ...) and
// recomputes their checksums ([FixChecksums]: one pass over the packet), and
// builds replies to them ([ResetReplies], [ICMPErrorReply], [UDPReply]).
//
// The decoder does not verify checksums: the kernel has checked the IP header
// before a packet reaches any netfilter hook.
package packet

import (
	"encoding/binary"
	"math"
	"net/netip"
	"strconv"
	"strings"
)

// IP protocol numbers (the IPv4 protocol field and IPv6 next header values).
const (
	ProtoHopByHop uint8 = 0   // IPv6 hop-by-hop options header
	ProtoICMP     uint8 = 1   // ICMP for IPv4
	ProtoIGMP     uint8 = 2   // IGMP
	ProtoTCP      uint8 = 6   // TCP
	ProtoUDP      uint8 = 17  // UDP
	ProtoIPv6     uint8 = 41  // IPv6 encapsulation
	ProtoRouting  uint8 = 43  // IPv6 routing header
	ProtoFragment uint8 = 44  // IPv6 fragment header
	ProtoGRE      uint8 = 47  // GRE
	ProtoESP      uint8 = 50  // IPsec encapsulating security payload
	ProtoAH       uint8 = 51  // IPsec authentication header
	ProtoICMPv6   uint8 = 58  // ICMP for IPv6
	ProtoNoNext   uint8 = 59  // IPv6 no next header
	ProtoDstOpts  uint8 = 60  // IPv6 destination options header
	ProtoSCTP     uint8 = 132 // SCTP
	ProtoUDPLite  uint8 = 136 // UDP-Lite
)

// TCP flag bits, as in byte 13 of the TCP header (Parsed.TCPFlags).
const (
	TCPFin uint8 = 0x01
	TCPSyn uint8 = 0x02
	TCPRst uint8 = 0x04
	TCPPsh uint8 = 0x08
	TCPAck uint8 = 0x10
	TCPUrg uint8 = 0x20
	TCPEce uint8 = 0x40
	TCPCwr uint8 = 0x80
)

// Reasons stored in Parsed.Err. They are constants, so Decode never
// allocates, and callers may compare against them.
const (
	ReasonEmpty         = "empty packet"
	ReasonBadVersion    = "bad IP version"
	ReasonShortIPv4     = "short IPv4 header"
	ReasonShortIPv6     = "short IPv6 header"
	ReasonBadIHL        = "bad IPv4 header length"
	ReasonBadTotalLen   = "IPv4 total length below header length"
	ReasonIPv4Options   = "IPv4 options beyond total length"
	ReasonExtBeyondIP   = "IPv6 extension header beyond payload length"
	ReasonTooManyExt    = "too many IPv6 extension headers"
	ReasonL4BeyondIP    = "transport header beyond IP length"
	ReasonBadTCPOffset  = "bad TCP data offset"
	ReasonTCPOptsBeyond = "TCP data offset beyond IP length"
)

const (
	maxIPv6ExtHeaders   = 8 // extension headers walked before giving up
	ipv4MinHeaderLen    = 20
	ipv6HeaderLen       = 40
	tcpMinHeaderLen     = 20
	udpHeaderLen        = 8
	icmpHeaderLen       = 8
	sctpHeaderLen       = 12
	ipv6MinExtLen       = 8
	ipv6FragmentHdrLen  = 8
	ipv4MoreFragments   = 0x2000
	ipv4FragOffsetMask  = 0x1fff
	ipv6FragOffsetMask  = 0xfff8
	maxLengthField      = 0xffff
	unknownLengthLimit  = math.MaxInt
	minIPv4HeaderLenFld = 5 // IHL, in 32-bit words
)

// Parsed is a decoded packet. Decode fills every field from scratch; the
// zero value is not meaningful until Decode has run.
//
// Offsets are into the buffer given to Decode. When L4Off is not -1 the
// transport protocol's fixed header (TCP 20, UDP and UDP-Lite 8, ICMP and
// ICMPv6 8, SCTP 12 bytes) lies inside that buffer; for other protocols
// L4Off is where their header starts, with at least one byte present.
type Parsed struct {
	Family           uint8      // 4 or 6; 0 when the bytes are not a decodable IP header
	Proto            uint8      // transport protocol (after IPv6 extension headers); where the chain could not be walked, the header decoding stopped at
	Src, Dst         netip.Addr // IPv4 addresses are 4-byte addresses, not 4in6
	Len              int        // declared total length (IPv4 total length, IPv6 payload length + 40); 0 if unknown (length field 0 on a buffer over 64 KiB, as for BIG TCP or jumbograms)
	TTL              uint8      // TTL or hop limit
	SrcPort, DstPort uint16     // TCP, UDP, UDP-Lite and SCTP ports; 0 otherwise
	TCPFlags         uint8      // TCP flag byte (TCPFin ... TCPCwr)
	ICMPType         uint8      // ICMP or ICMPv6 type
	ICMPCode         uint8      // ICMP or ICMPv6 code
	L4Off            int        // offset of the transport header, -1 if absent or unknown
	PayloadOff       int        // offset after the transport header (TCP data offset honoured), -1 if absent
	Fragment         bool       // a fragment: IPv4 MF or offset != 0, or an IPv6 fragment header
	NonFirstFragment bool       // a fragment with offset != 0, which carries no transport header
	Truncated        bool       // the buffer ends before the declared length or before a header it announced
	Err              string     // a Reason constant when the packet is malformed, "" otherwise
}

// Decode resets p and decodes b, which starts at the IP header. It never
// allocates and never panics. A buffer that is merely shorter than the
// packet (an NFQUEUE copy range) sets Truncated, decodes every header that
// is complete, and leaves Err empty; Err reports malformed packets.
func (p *Parsed) Decode(b []byte) {
	*p = Parsed{L4Off: -1, PayloadOff: -1}
	if len(b) == 0 {
		p.Truncated = true
		p.Err = ReasonEmpty
		return
	}
	switch b[0] >> 4 {
	case 4:
		p.decode4(b)
	case 6:
		p.decode6(b)
	default:
		p.Err = ReasonBadVersion
	}
}

func (p *Parsed) decode4(b []byte) {
	if len(b) < ipv4MinHeaderLen {
		p.Truncated = true
		p.Err = ReasonShortIPv4
		return
	}
	if b[0]&0x0f < minIPv4HeaderLenFld {
		p.Err = ReasonBadIHL
		return
	}
	ihl := int(b[0]&0x0f) * 4
	p.Family = 4
	p.TTL = b[8]
	p.Proto = b[9]
	p.Src = netip.AddrFrom4([4]byte(b[12:16]))
	p.Dst = netip.AddrFrom4([4]byte(b[16:20]))
	p.Len = int(binary.BigEndian.Uint16(b[2:4]))

	limit := p.Len
	switch {
	case p.Len == 0 && len(b) > maxLengthField:
		limit = unknownLengthLimit // BIG TCP: the length does not fit the field
	case p.Len < ipv4MinHeaderLen:
		p.Err = ReasonBadTotalLen
		return
	case p.Len > len(b):
		p.Truncated = true
	}

	frag := binary.BigEndian.Uint16(b[6:8])
	p.Fragment = frag&(ipv4MoreFragments|ipv4FragOffsetMask) != 0
	if frag&ipv4FragOffsetMask != 0 {
		p.NonFirstFragment = true
		return
	}
	if !p.room(b, 0, ihl, limit, ReasonIPv4Options) {
		return
	}
	p.decodeL4(b, ihl, limit)
}

func (p *Parsed) decode6(b []byte) {
	if len(b) < ipv6HeaderLen {
		p.Truncated = true
		p.Err = ReasonShortIPv6
		return
	}
	p.Family = 6
	p.TTL = b[7]
	p.Src = netip.AddrFrom16([16]byte(b[8:24]))
	p.Dst = netip.AddrFrom16([16]byte(b[24:40]))
	plen := int(binary.BigEndian.Uint16(b[4:6]))
	p.Len = ipv6HeaderLen + plen
	limit := p.Len
	switch {
	case plen == 0 && len(b) > ipv6HeaderLen+maxLengthField:
		p.Len = 0 // jumbogram or BIG TCP: the length does not fit the field
		limit = unknownLengthLimit
	case p.Len > len(b):
		p.Truncated = true
	}

	nh := b[6]
	off := ipv6HeaderLen
	for i := 0; ; i++ {
		p.Proto = nh
		switch nh {
		case ProtoHopByHop, ProtoRouting, ProtoFragment, ProtoDstOpts, ProtoAH:
		default:
			p.decodeL4(b, off, limit)
			return
		}
		if i == maxIPv6ExtHeaders {
			p.Err = ReasonTooManyExt
			return
		}
		if !p.room(b, off, ipv6MinExtLen, limit, ReasonExtBeyondIP) {
			return
		}
		next := b[off]
		var hlen int
		switch nh {
		case ProtoFragment:
			hlen = ipv6FragmentHdrLen
			p.Fragment = true
			if binary.BigEndian.Uint16(b[off+2:off+4])&ipv6FragOffsetMask != 0 {
				p.NonFirstFragment = true
				p.Proto = next
				return
			}
		case ProtoAH:
			hlen = (int(b[off+1]) + 2) * 4
		default:
			hlen = (int(b[off+1]) + 1) * 8
		}
		if !p.room(b, off, hlen, limit, ReasonExtBeyondIP) {
			return
		}
		off += hlen
		nh = next
	}
}

// room reports whether the n bytes at off lie inside both the declared
// packet (b[:limit]) and the buffer. If not, it records why: Err = reason
// when the declared length itself is too short, Truncated when only the
// buffer is.
func (p *Parsed) room(b []byte, off, n, limit int, reason string) bool {
	end := off + n
	if end > limit {
		p.Err = reason
		return false
	}
	if end > len(b) {
		p.Truncated = true
		return false
	}
	return true
}

// decodeL4 decodes the transport header of protocol p.Proto at off.
func (p *Parsed) decodeL4(b []byte, off, limit int) {
	switch {
	case p.Proto == ProtoTCP:
		if !p.room(b, off, tcpMinHeaderLen, limit, ReasonL4BeyondIP) {
			return
		}
		p.L4Off = off
		p.ports(b, off)
		p.TCPFlags = b[off+13]
		doff := int(b[off+12]>>4) * 4
		if doff < tcpMinHeaderLen {
			p.Err = ReasonBadTCPOffset
			return
		}
		if p.room(b, off, doff, limit, ReasonTCPOptsBeyond) {
			p.PayloadOff = off + doff
		}
	case p.Proto == ProtoUDP || p.Proto == ProtoUDPLite:
		if p.room(b, off, udpHeaderLen, limit, ReasonL4BeyondIP) {
			p.ports(b, off)
			p.L4Off, p.PayloadOff = off, off+udpHeaderLen
		}
	case p.Proto == ProtoSCTP:
		if p.room(b, off, sctpHeaderLen, limit, ReasonL4BeyondIP) {
			p.ports(b, off)
			p.L4Off, p.PayloadOff = off, off+sctpHeaderLen
		}
	case p.Proto == ProtoICMP && p.Family == 4, p.Proto == ProtoICMPv6 && p.Family == 6:
		if p.room(b, off, icmpHeaderLen, limit, ReasonL4BeyondIP) {
			p.ICMPType, p.ICMPCode = b[off], b[off+1]
			p.L4Off, p.PayloadOff = off, off+icmpHeaderLen
		}
	case p.Proto == ProtoNoNext:
		// Nothing follows; bytes up to the declared length are ignored.
	default:
		if off < len(b) && off < limit {
			p.L4Off = off
		}
	}
}

func (p *Parsed) ports(b []byte, off int) {
	p.SrcPort = binary.BigEndian.Uint16(b[off : off+2])
	p.DstPort = binary.BigEndian.Uint16(b[off+2 : off+4])
}

// Payload returns the bytes after the transport header: b[PayloadOff:],
// ending at the declared length or the end of b, whichever comes first.
// b must be the buffer given to Decode. It returns nil when there is no
// payload (PayloadOff is -1, or nothing follows the header).
func (p *Parsed) Payload(b []byte) []byte {
	end := len(b)
	if p.Len > 0 && p.Len < end {
		end = p.Len
	}
	if p.PayloadOff < 0 || p.PayloadOff >= end {
		return nil
	}
	return b[p.PayloadOff:end:end]
}

// String describes the packet for debugging, in the style of
// "tcp 10.0.0.1:1234 > 10.0.0.2:22 [S]". It allocates.
func (p *Parsed) String() string {
	if p.Family == 0 {
		return "invalid: " + p.Err
	}
	var sb strings.Builder
	sb.WriteString(ProtoName(p.Proto))
	sb.WriteByte(' ')
	hasPorts := p.L4Off >= 0 && (p.Proto == ProtoTCP || p.Proto == ProtoUDP ||
		p.Proto == ProtoUDPLite || p.Proto == ProtoSCTP)
	if hasPorts {
		sb.WriteString(netip.AddrPortFrom(p.Src, p.SrcPort).String())
		sb.WriteString(" > ")
		sb.WriteString(netip.AddrPortFrom(p.Dst, p.DstPort).String())
	} else {
		sb.WriteString(p.Src.String())
		sb.WriteString(" > ")
		sb.WriteString(p.Dst.String())
	}
	switch {
	case p.Proto == ProtoTCP && p.L4Off >= 0:
		sb.WriteString(" [")
		sb.WriteString(TCPFlagString(p.TCPFlags))
		sb.WriteByte(']')
	case (p.Proto == ProtoICMP || p.Proto == ProtoICMPv6) && p.L4Off >= 0:
		sb.WriteString(" type=")
		sb.WriteString(strconv.Itoa(int(p.ICMPType)))
		sb.WriteString(" code=")
		sb.WriteString(strconv.Itoa(int(p.ICMPCode)))
	}
	sb.WriteString(" len=")
	sb.WriteString(strconv.Itoa(p.Len))
	if p.NonFirstFragment {
		sb.WriteString(" frag+")
	} else if p.Fragment {
		sb.WriteString(" frag")
	}
	if p.Truncated {
		sb.WriteString(" truncated")
	}
	if p.Err != "" {
		sb.WriteString(" err=\"")
		sb.WriteString(p.Err)
		sb.WriteByte('"')
	}
	return sb.String()
}

// ProtoName returns a short lower-case name for an IP protocol number,
// or "proto-N" for numbers without one.
func ProtoName(proto uint8) string {
	switch proto {
	case ProtoHopByHop:
		return "hopopt"
	case ProtoICMP:
		return "icmp"
	case ProtoIGMP:
		return "igmp"
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoIPv6:
		return "ipv6"
	case ProtoRouting:
		return "ipv6-route"
	case ProtoFragment:
		return "ipv6-frag"
	case ProtoGRE:
		return "gre"
	case ProtoESP:
		return "esp"
	case ProtoAH:
		return "ah"
	case ProtoICMPv6:
		return "icmp6"
	case ProtoNoNext:
		return "ipv6-nonxt"
	case ProtoDstOpts:
		return "ipv6-opts"
	case ProtoSCTP:
		return "sctp"
	case ProtoUDPLite:
		return "udplite"
	}
	return "proto-" + strconv.Itoa(int(proto))
}

// TCPFlagString renders TCP flags as tcpdump does: F S R P . U E W in that
// order ("S." for SYN-ACK), or "none".
func TCPFlagString(flags uint8) string {
	if flags == 0 {
		return "none"
	}
	const names = "FSRP.UEW"
	var buf [8]byte
	n := 0
	for i := range 8 {
		if flags&(1<<i) != 0 {
			buf[n] = names[i]
			n++
		}
	}
	return string(buf[:n])
}

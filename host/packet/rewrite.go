package packet

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Rewrites of a decoded packet, in place. They change the fields named and
// the lengths that follow from them; checksums are left to FixChecksums, so a
// caller making several changes pays for one pass.

// Reasons a rewrite is refused. The packet is unchanged when one is returned.
var (
	ErrNotRewritable   = errors.New("the packet is malformed or truncated (copy range) and cannot be rewritten")
	ErrFragment        = errors.New("the packet is a fragment: its transport header and checksum belong to the whole datagram")
	ErrNoPayload       = errors.New("the packet has no transport payload this rewrite knows (TCP, UDP, ICMP, ICMPv6)")
	ErrTCPLength       = errors.New("a TCP payload must keep its length: the kernel does not shift sequence numbers for packets rewritten through NFQUEUE, so the connection would break")
	ErrTooLong         = errors.New("the packet would exceed 65535 bytes")
	ErrOutOfRange      = errors.New("the write lies outside the packet")
	ErrNotSYN          = errors.New("not a TCP SYN")
	ErrNoMSS           = errors.New("the SYN carries no MSS option")
	ErrBadTCPOptions   = errors.New("malformed TCP options")
	ErrBadFieldValue   = errors.New("value out of range")
	ErrUnknownProtocol = errors.New("not an IPv4 or IPv6 packet")
)

// Rewritable reports why the packet decoded in p cannot be rewritten at all,
// or nil. A truncated copy would cut the packet short if sent back.
func Rewritable(p *Parsed) error {
	if p.Family == 0 || p.Truncated || p.Err != "" || p.Len == 0 {
		return ErrNotRewritable
	}
	return nil
}

// SetTTL sets the IPv4 TTL or the IPv6 hop limit.
func SetTTL(p *Parsed, b []byte, ttl uint8) {
	if p.Family == 4 {
		b[8] = ttl
	} else {
		b[7] = ttl
	}
}

// TrafficClass returns the IPv4 TOS byte or the IPv6 traffic class (DSCP in
// the upper six bits, ECN in the lower two).
func TrafficClass(p *Parsed, b []byte) uint8 {
	if p.Family == 4 {
		return b[1]
	}
	return b[0]<<4 | b[1]>>4
}

// SetTrafficClass sets the IPv4 TOS byte or the IPv6 traffic class.
func SetTrafficClass(p *Parsed, b []byte, tc uint8) {
	if p.Family == 4 {
		b[1] = tc
		return
	}
	b[0] = 0x60 | tc>>4
	b[1] = tc<<4 | b[1]&0x0f
}

// ClampMSS lowers the MSS option of a TCP SYN (or SYN-ACK) to at most mss.
// It reports whether the option changed.
func ClampMSS(p *Parsed, b []byte, mss uint16) (bool, error) {
	if p.Proto != ProtoTCP || p.L4Off < 0 || p.PayloadOff < 0 || p.TCPFlags&TCPSyn == 0 {
		return false, ErrNotSYN
	}
	opts := b[p.L4Off+tcpMinHeaderLen : p.PayloadOff]
	for i := 0; i < len(opts); {
		switch kind := opts[i]; kind {
		case 0: // end of options
			return false, ErrNoMSS
		case 1: // no-op
			i++
			continue
		}
		if i+1 >= len(opts) || opts[i+1] < 2 || i+int(opts[i+1]) > len(opts) {
			return false, ErrBadTCPOptions
		}
		n := int(opts[i+1])
		if opts[i] == 2 {
			if n != 4 {
				return false, ErrBadTCPOptions
			}
			if binary.BigEndian.Uint16(opts[i+2:i+4]) <= mss {
				return false, nil
			}
			binary.BigEndian.PutUint16(opts[i+2:i+4], mss)
			return true, nil
		}
		i += n
	}
	return false, ErrNoMSS
}

// CheckPayload reports why the payload of the packet decoded in p cannot
// be replaced by n bytes, or nil.
func CheckPayload(p *Parsed, n int) error {
	if p.Fragment {
		return ErrFragment
	}
	switch p.Proto {
	case ProtoTCP, ProtoUDP, ProtoICMP, ProtoICMPv6:
	default:
		return ErrNoPayload
	}
	if p.PayloadOff < 0 || p.Len < p.PayloadOff {
		return ErrNoPayload
	}
	old := p.Len - p.PayloadOff
	if n == old {
		return nil
	}
	if p.Proto == ProtoTCP {
		return fmt.Errorf("%w (%d bytes, %d given)", ErrTCPLength, old, n)
	}
	total := p.PayloadOff + n
	if total > maxLengthField || p.Family == 6 && total-ipv6HeaderLen > maxLengthField {
		return ErrTooLong
	}
	return nil
}

// SetPayload replaces the transport payload of the packet b, decoded in p,
// and returns the new packet: b itself when the length is unchanged, else b
// resized (reusing its capacity when it can). UDP, ICMP and ICMPv6 payloads
// may change length (the UDP length and the IP length follow); TCP payloads
// may not (ErrTCPLength). Any bytes after the declared IP length are dropped
// when the length changes.
func SetPayload(p *Parsed, b []byte, payload []byte) ([]byte, error) {
	if err := CheckPayload(p, len(payload)); err != nil {
		return b, err
	}
	if len(payload) == p.Len-p.PayloadOff {
		copy(b[p.PayloadOff:p.Len], payload)
		return b, nil
	}
	total := p.PayloadOff + len(payload)
	var nb []byte
	if cap(b) >= total {
		nb = b[:total]
	} else {
		nb = make([]byte, total)
		copy(nb, b[:p.PayloadOff])
	}
	copy(nb[p.PayloadOff:], payload)
	if p.Family == 4 {
		binary.BigEndian.PutUint16(nb[2:4], uint16(total))
	} else {
		binary.BigEndian.PutUint16(nb[4:6], uint16(total-ipv6HeaderLen))
	}
	if p.Proto == ProtoUDP {
		binary.BigEndian.PutUint16(nb[p.L4Off+4:p.L4Off+6], uint16(total-p.L4Off))
	}
	return nb, nil
}

// WriteAt copies data into b at off. The write must lie inside the packet.
func WriteAt(b []byte, off int, data []byte) error {
	if off < 0 || off > len(b) || len(data) > len(b)-off {
		return ErrOutOfRange
	}
	copy(b[off:], data)
	return nil
}

package packet

import "encoding/binary"

// Checksums of rewritten packets.
//
// A packet that NFQUEUE hands over may carry a partial transport checksum
// (CHECKSUM_PARTIAL: locally generated packets, where the checksum field holds
// only the pseudo-header sum for the NIC to finish). When a verdict carries a
// new packet the kernel marks it CHECKSUM_NONE, so every checksum in it must
// be complete: the transport checksum is therefore recomputed over the whole
// segment, never updated incrementally from a value that may be partial. The
// IPv4 header checksum is always complete and covers 20-60 bytes; it is
// recomputed too (cheaper than reasoning about which words changed).

// IPv4HeaderChecksum returns the checksum the IPv4 header hdr (its IHL
// bytes) must carry. The checksum field itself is skipped.
func IPv4HeaderChecksum(hdr []byte) uint16 {
	s := sum(0, hdr[:10])
	s = sum(s, hdr[12:])
	return ^fold(s)
}

// L4Checksum returns the checksum that the transport segment seg (from the
// transport header to the end of the IP packet) of protocol proto must carry,
// for a packet of family 4 or 6 between src and dst (16 or 4 bytes each). The
// checksum field is skipped. ICMP for IPv4 has no pseudo-header. For UDP a
// result of 0 is returned as 0xffff (0 means "no checksum").
func L4Checksum(family, proto uint8, src, dst []byte, seg []byte) (uint16, bool) {
	field := checksumField(proto)
	if field < 0 || len(seg) < field+2 {
		return 0, false
	}
	var s uint32
	if !(family == 4 && proto == ProtoICMP) {
		s = sum(sum(0, src), dst)
		n := uint32(len(seg))
		s += n>>16 + n&0xffff + uint32(proto)
	}
	s = sum(s, seg[:field])
	s = sum(s, seg[field+2:])
	c := ^fold(s)
	if c == 0 && proto == ProtoUDP {
		c = 0xffff
	}
	return c, true
}

// checksumField is the offset of the checksum in a transport header, -1 for
// protocols whose checksum this package does not compute.
func checksumField(proto uint8) int {
	switch proto {
	case ProtoTCP:
		return 16
	case ProtoUDP:
		return 6
	case ProtoICMP, ProtoICMPv6:
		return 2
	}
	return -1
}

// FixChecksums recomputes the IPv4 header checksum and the TCP, UDP, ICMP or
// ICMPv6 checksum of the packet b, decoded in p, in place. A fragment's
// transport checksum covers the whole datagram and is left alone, as are
// protocols without one it knows. It reports whether the transport checksum
// was rewritten.
func FixChecksums(p *Parsed, b []byte) bool {
	if p.Family == 4 && len(b) >= ipv4MinHeaderLen {
		ihl := int(b[0]&0x0f) * 4
		if ihl >= ipv4MinHeaderLen && ihl <= len(b) {
			binary.BigEndian.PutUint16(b[10:12], IPv4HeaderChecksum(b[:ihl]))
		}
	}
	if p.Fragment || p.Truncated || p.Err != "" || p.L4Off < 0 {
		return false
	}
	end := len(b)
	if p.Len > 0 && p.Len < end {
		end = p.Len
	}
	src, dst := addrBytes(p, b)
	seg := b[p.L4Off:end]
	c, ok := L4Checksum(p.Family, p.Proto, src, dst, seg)
	if !ok {
		return false
	}
	binary.BigEndian.PutUint16(seg[checksumField(p.Proto):], c)
	return true
}

// addrBytes are the source and destination addresses as they sit in b.
// IPv6 routing headers are not followed: the pseudo-header uses the address
// in the IPv6 header.
func addrBytes(p *Parsed, b []byte) (src, dst []byte) {
	if p.Family == 4 {
		return b[12:16], b[16:20]
	}
	return b[8:24], b[24:40]
}

// VerifyChecksums reports whether the IPv4 header checksum and the transport
// checksum of b, decoded in p, are right (what a receiver checks). Fragments
// and protocols without a known checksum report only the IP header. A UDP
// checksum of 0 over IPv4 means "none" and passes.
func VerifyChecksums(p *Parsed, b []byte) bool {
	if p.Family == 4 {
		ihl := int(b[0]&0x0f) * 4
		if fold(sum(0, b[:ihl])) != 0xffff {
			return false
		}
	}
	if p.Fragment || p.Truncated || p.Err != "" || p.L4Off < 0 || checksumField(p.Proto) < 0 {
		return true
	}
	end := len(b)
	if p.Len > 0 && p.Len < end {
		end = p.Len
	}
	seg := b[p.L4Off:end]
	if p.Proto == ProtoUDP && p.Family == 4 && binary.BigEndian.Uint16(seg[6:8]) == 0 {
		return true
	}
	src, dst := addrBytes(p, b)
	var s uint32
	if !(p.Family == 4 && p.Proto == ProtoICMP) {
		n := uint32(len(seg))
		s = sum(sum(0, src), dst) + n>>16 + n&0xffff + uint32(p.Proto)
	}
	return fold(sum(s, seg)) == 0xffff
}

// ChecksumPending reports whether the TCP or UDP checksum of b, decoded in
// p, holds the pseudo-header sum alone: a checksum the kernel left for the
// network card to finish (CHECKSUM_PARTIAL, as on locally generated or
// GRO-merged packets), which NFQUEUE hands on as it is. A receiver never
// sees it; a firewall must not read it as wrong.
func ChecksumPending(p *Parsed, b []byte) bool {
	if (p.Proto != ProtoTCP && p.Proto != ProtoUDP) || p.Fragment || p.L4Off < 0 || p.Err != "" || (p.Family != 4 && p.Family != 6) {
		return false
	}
	end := len(b)
	if p.Len > 0 && p.Len < end {
		end = p.Len
	}
	field := p.L4Off + checksumField(p.Proto)
	if field+2 > end {
		return false
	}
	src, dst := addrBytes(p, b)
	n := uint32(end - p.L4Off)
	s := sum(sum(0, src), dst) + n>>16 + n&0xffff + uint32(p.Proto)
	return binary.BigEndian.Uint16(b[field:]) == fold(s)
}

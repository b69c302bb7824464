package packet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Spec describes a packet for Build.
type Spec struct {
	Src, Dst           netip.Addr // both IPv4 (IPv4 packet) or both IPv6 (IPv6 packet)
	Proto              uint8      // ProtoTCP, ProtoUDP, ProtoICMP (IPv4), ProtoICMPv6 (IPv6); any other number gets Payload right after the IP header
	SrcPort, DstPort   uint16     // TCP and UDP ports
	TCPFlags           uint8      // TCP flags (TCPSyn, ...)
	TTL                uint8      // TTL or hop limit; 0 means 64
	ICMPType, ICMPCode uint8      // ICMP or ICMPv6 type and code
	Payload            []byte     // bytes after the transport header
	Seq, Ack           uint32     // TCP sequence and acknowledgement numbers; for ICMP, Seq fills the 4 bytes after the checksum (echo: id<<16 | sequence)
}

const defaultTTL = 64

// Build returns a valid packet described by s: an IPv4 header (no options,
// DF set, ID 0) or an IPv6 header (no extension headers), chosen by the
// address family, then a TCP (20 bytes, window 65535), UDP or ICMP/ICMPv6
// (8 bytes) header and the payload. The IPv4 header checksum and the
// transport checksum are correct.
func Build(s Spec) ([]byte, error) {
	if !s.Src.IsValid() || !s.Dst.IsValid() {
		return nil, errors.New("packet: build: source and destination addresses are required")
	}
	v4 := s.Src.Is4()
	if v4 != s.Dst.Is4() {
		return nil, fmt.Errorf("packet: build: address families differ (%s, %s)", s.Src, s.Dst)
	}
	switch {
	case s.Proto == ProtoICMP && !v4:
		return nil, errors.New("packet: build: ICMP needs IPv4 addresses (use ProtoICMPv6)")
	case s.Proto == ProtoICMPv6 && v4:
		return nil, errors.New("packet: build: ICMPv6 needs IPv6 addresses (use ProtoICMP)")
	}

	hdrLen := 0
	switch s.Proto {
	case ProtoTCP:
		hdrLen = tcpMinHeaderLen
	case ProtoUDP:
		hdrLen = udpHeaderLen
	case ProtoICMP, ProtoICMPv6:
		hdrLen = icmpHeaderLen
	}
	ipLen := ipv6HeaderLen
	if v4 {
		ipLen = ipv4MinHeaderLen
	}
	l4Len := hdrLen + len(s.Payload)
	if v4 && ipLen+l4Len > maxLengthField || !v4 && l4Len > maxLengthField {
		return nil, fmt.Errorf("packet: build: %d bytes of payload do not fit one packet", len(s.Payload))
	}
	ttl := s.TTL
	if ttl == 0 {
		ttl = defaultTTL
	}

	b := make([]byte, ipLen+l4Len)
	l4 := b[ipLen:]
	copy(l4[hdrLen:], s.Payload)

	// Pseudo-header sum for the TCP, UDP and ICMPv6 checksums.
	var pseudo uint32
	if v4 {
		b[0] = 0x45
		binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
		binary.BigEndian.PutUint16(b[6:8], 0x4000) // DF
		b[8] = ttl
		b[9] = s.Proto
		src, dst := s.Src.As4(), s.Dst.As4()
		copy(b[12:16], src[:])
		copy(b[16:20], dst[:])
		binary.BigEndian.PutUint16(b[10:12], ^fold(sum(0, b[:ipLen])))
		pseudo = sum(sum(0, b[12:20]), []byte{0, s.Proto, byte(l4Len >> 8), byte(l4Len)})
	} else {
		b[0] = 0x60
		binary.BigEndian.PutUint16(b[4:6], uint16(l4Len))
		b[6] = s.Proto
		b[7] = ttl
		src, dst := s.Src.As16(), s.Dst.As16()
		copy(b[8:24], src[:])
		copy(b[24:40], dst[:])
		pseudo = sum(sum(0, b[8:40]), []byte{0, 0, byte(l4Len >> 8), byte(l4Len), 0, 0, 0, s.Proto})
	}

	switch s.Proto {
	case ProtoTCP:
		binary.BigEndian.PutUint16(l4[0:2], s.SrcPort)
		binary.BigEndian.PutUint16(l4[2:4], s.DstPort)
		binary.BigEndian.PutUint32(l4[4:8], s.Seq)
		binary.BigEndian.PutUint32(l4[8:12], s.Ack)
		l4[12] = (tcpMinHeaderLen / 4) << 4
		l4[13] = s.TCPFlags
		binary.BigEndian.PutUint16(l4[14:16], 0xffff)
		binary.BigEndian.PutUint16(l4[16:18], ^fold(sum(pseudo, l4)))
	case ProtoUDP:
		binary.BigEndian.PutUint16(l4[0:2], s.SrcPort)
		binary.BigEndian.PutUint16(l4[2:4], s.DstPort)
		binary.BigEndian.PutUint16(l4[4:6], uint16(l4Len))
		c := ^fold(sum(pseudo, l4))
		if c == 0 {
			c = 0xffff // 0 means "no checksum" in UDP
		}
		binary.BigEndian.PutUint16(l4[6:8], c)
	case ProtoICMP, ProtoICMPv6:
		l4[0], l4[1] = s.ICMPType, s.ICMPCode
		binary.BigEndian.PutUint32(l4[4:8], s.Seq)
		var start uint32
		if s.Proto == ProtoICMPv6 {
			start = pseudo
		}
		binary.BigEndian.PutUint16(l4[2:4], ^fold(sum(start, l4)))
	}
	return b, nil
}

// sum adds b to the running ones' complement sum s as big-endian 16-bit
// words (an odd final byte is padded with zero).
func sum(s uint32, b []byte) uint32 {
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

// fold reduces a running sum to 16 bits with end-around carry.
func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

package pcap

import (
	"encoding/binary"
	"fmt"
)

// EtherTypes the decoder follows.
const (
	etherTypeIPv4  = 0x0800
	etherTypeIPv6  = 0x86dd
	etherTypeVLAN  = 0x8100 // 802.1Q
	etherTypeQinQ  = 0x88a8 // 802.1ad
	etherTypeQinQ2 = 0x9100 // pre-standard 802.1ad
	maxVLANTags    = 2
)

// decode strips the link-layer header of a frame of the given link type.
// It returns the IP packet, or nil and the reason the frame was skipped.
func decode(link uint32, frame []byte) ([]byte, string) {
	switch link {
	case LinkTypeEthernet:
		if len(frame) < 14 {
			return nil, fmt.Sprintf("truncated Ethernet header (%d bytes)", len(frame))
		}
		return etherPayload(binary.BigEndian.Uint16(frame[12:]), frame[14:])
	case LinkTypeRaw, LinkTypeRawOld:
		if len(frame) == 0 {
			return nil, "empty packet"
		}
		switch frame[0] >> 4 {
		case 4, 6:
			return trimIP(frame), ""
		}
		return nil, fmt.Sprintf("not IP: version %d", frame[0]>>4)
	case LinkTypeIPv4, LinkTypeIPv6:
		want := byte(4)
		if link == LinkTypeIPv6 {
			want = 6
		}
		if len(frame) == 0 || frame[0]>>4 != want {
			return nil, fmt.Sprintf("not IPv%d", want)
		}
		return trimIP(frame), ""
	case LinkTypeLinuxSLL:
		if len(frame) < 16 {
			return nil, fmt.Sprintf("truncated Linux cooked header (%d bytes)", len(frame))
		}
		return etherPayload(binary.BigEndian.Uint16(frame[14:]), frame[16:])
	case LinkTypeLinuxSLL2:
		if len(frame) < 20 {
			return nil, fmt.Sprintf("truncated Linux cooked v2 header (%d bytes)", len(frame))
		}
		return etherPayload(binary.BigEndian.Uint16(frame[0:]), frame[20:])
	case LinkTypeNull, LinkTypeLoop:
		if len(frame) < 4 {
			return nil, fmt.Sprintf("truncated loopback header (%d bytes)", len(frame))
		}
		fam := binary.BigEndian.Uint32(frame)
		if link == LinkTypeNull && fam > 0xffff {
			// Written in the capturing host's byte order, which was
			// little-endian: the family values are all below 256.
			fam = binary.LittleEndian.Uint32(frame)
		}
		switch fam {
		case 2: // AF_INET everywhere
			return etherPayload(etherTypeIPv4, frame[4:])
		case 10, 24, 28, 30: // AF_INET6 on Linux, NetBSD/OpenBSD, FreeBSD, Darwin
			return etherPayload(etherTypeIPv6, frame[4:])
		}
		return nil, fmt.Sprintf("not IP: address family %d", fam)
	}
	return nil, fmt.Sprintf("unsupported link type %d", link)
}

// etherPayload follows up to two VLAN tags from an EtherType and returns
// the payload if it is IPv4 or IPv6.
func etherPayload(etype uint16, payload []byte) ([]byte, string) {
	for tags := 0; etype == etherTypeVLAN || etype == etherTypeQinQ || etype == etherTypeQinQ2; tags++ {
		if tags == maxVLANTags {
			return nil, fmt.Sprintf("more than %d VLAN tags", maxVLANTags)
		}
		if len(payload) < 4 {
			return nil, "truncated VLAN tag"
		}
		etype = binary.BigEndian.Uint16(payload[2:])
		payload = payload[4:]
	}
	switch etype {
	case etherTypeIPv4, etherTypeIPv6:
		if len(payload) == 0 {
			return nil, "empty IP packet"
		}
		return trimIP(payload), ""
	}
	return nil, fmt.Sprintf("not IP: ethertype 0x%04x", etype)
}

// trimIP cuts link-layer padding and trailers (an Ethernet frame's minimum
// size padding, an FCS) off an IP packet, using the length in its header.
// Packets whose header claims more than was captured are left as they are.
func trimIP(p []byte) []byte {
	switch p[0] >> 4 {
	case 4:
		if len(p) >= 4 {
			if n := int(binary.BigEndian.Uint16(p[2:])); n >= 20 && n < len(p) {
				return p[:n]
			}
		}
	case 6:
		if len(p) >= 40 {
			// A zero payload length means a jumbogram: leave it.
			if n := int(binary.BigEndian.Uint16(p[4:])); n != 0 && 40+n < len(p) {
				return p[:40+n]
			}
		}
	}
	return p
}

package packet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

// naiveChecksumOK is an independent check of a packet's checksums, written
// from RFC 791/793/768/792/4443 without this package's helpers: it builds
// the pseudo-header as bytes and sums with onesSum (packet_test.go).
func naiveChecksumOK(t *testing.T, b []byte) {
	t.Helper()
	var src, dst, seg []byte
	var proto byte
	switch b[0] >> 4 {
	case 4:
		ihl := int(b[0]&15) * 4
		if got := onesSum(b[:ihl]); got != 0xffff {
			t.Fatalf("IPv4 header checksum wrong (sum %#x)", got)
		}
		total := int(binary.BigEndian.Uint16(b[2:4]))
		src, dst, proto, seg = b[12:16], b[16:20], b[9], b[ihl:total]
	case 6:
		plen := int(binary.BigEndian.Uint16(b[4:6]))
		src, dst, proto, seg = b[8:24], b[24:40], b[6], b[40:40+plen]
	}
	var pseudo []byte
	switch {
	case b[0]>>4 == 4 && proto == ProtoICMP:
	case b[0]>>4 == 4:
		pseudo = append(append(append([]byte{}, src...), dst...), 0, proto, byte(len(seg)>>8), byte(len(seg)))
	default:
		l := make([]byte, 4)
		binary.BigEndian.PutUint32(l, uint32(len(seg)))
		pseudo = append(append(append(append([]byte{}, src...), dst...), l...), 0, 0, 0, proto)
	}
	if got := onesSum(pseudo, seg); got != 0xffff {
		t.Fatalf("proto %d checksum wrong (sum %#x)", proto, got)
	}
	if proto == ProtoUDP && int(binary.BigEndian.Uint16(seg[4:6])) != len(seg) {
		t.Fatalf("UDP length %d, segment %d", binary.BigEndian.Uint16(seg[4:6]), len(seg))
	}
}

func specs() map[string]Spec {
	v4a, v4b := netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("192.0.2.77")
	v6a, v6b := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8:ffff::abcd")
	return map[string]Spec{
		"tcp4":  {Src: v4a, Dst: v4b, Proto: ProtoTCP, SrcPort: 40000, DstPort: 80, TCPFlags: TCPAck | TCPPsh, Seq: 7, Ack: 9},
		"udp4":  {Src: v4a, Dst: v4b, Proto: ProtoUDP, SrcPort: 5353, DstPort: 53},
		"icmp4": {Src: v4a, Dst: v4b, Proto: ProtoICMP, ICMPType: 8, Seq: 0x10002},
		"tcp6":  {Src: v6a, Dst: v6b, Proto: ProtoTCP, SrcPort: 40000, DstPort: 443, TCPFlags: TCPAck, Seq: 1 << 31},
		"udp6":  {Src: v6a, Dst: v6b, Proto: ProtoUDP, SrcPort: 1, DstPort: 65535},
		"icmp6": {Src: v6a, Dst: v6b, Proto: ProtoICMPv6, ICMPType: 128, Seq: 3},
	}
}

// TestSetPayloadMatchesBuild: rewriting a packet's payload gives exactly the
// packet Build makes with the new payload (Build computes its checksums and
// lengths by its own code), and the checksums pass an independent check.
func TestSetPayloadMatchesBuild(t *testing.T) {
	for name, s := range specs() {
		for _, newLen := range []int{11, 0, 1, 300} {
			s.Payload = []byte("hello world")
			b, err := Build(s)
			if err != nil {
				t.Fatal(err)
			}
			// A partial checksum (as on locally generated packets) must not
			// leak into the result.
			var p Parsed
			p.Decode(b)
			binary.BigEndian.PutUint16(b[p.L4Off+checksumField(p.Proto):], 0x1234)

			payload := bytes.Repeat([]byte{0xa5, 0x17, 0x00}, newLen)[:newLen]
			nb, err := SetPayload(&p, b, payload)
			if s.Proto == ProtoTCP && newLen != 11 {
				if !errors.Is(err, ErrTCPLength) {
					t.Errorf("%s: TCP length change %d: err %v, want ErrTCPLength", name, newLen, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s/%d: %v", name, newLen, err)
			}
			p.Decode(nb)
			if !FixChecksums(&p, nb) {
				t.Fatalf("%s: transport checksum not fixed", name)
			}
			s.Payload = payload
			want, _ := Build(s)
			if !bytes.Equal(nb, want) {
				t.Errorf("%s/%d:\n got %x\nwant %x", name, newLen, nb, want)
			}
			naiveChecksumOK(t, nb)
			if !VerifyChecksums(&p, nb) {
				t.Errorf("%s/%d: VerifyChecksums disagrees", name, newLen)
			}
		}
	}
}

// TestHeaderRewrites: TTL, traffic class and MSS changes keep every checksum
// valid and touch only their field.
func TestHeaderRewrites(t *testing.T) {
	for name, s := range specs() {
		s.Payload = []byte("x")
		b, _ := Build(s)
		var p Parsed
		p.Decode(b)
		SetTTL(&p, b, 3)
		SetTrafficClass(&p, b, 46<<2|1)
		FixChecksums(&p, b)
		naiveChecksumOK(t, b)
		p.Decode(b)
		if p.TTL != 3 || TrafficClass(&p, b) != 46<<2|1 {
			t.Errorf("%s: ttl %d tc %#x", name, p.TTL, TrafficClass(&p, b))
		}
		if p.Family == 6 && b[0]>>4 != 6 {
			t.Errorf("%s: version nibble lost", name)
		}
	}
}

func synWithMSS(t *testing.T, v6 bool, mss uint16) []byte {
	t.Helper()
	s := specs()["tcp4"]
	if v6 {
		s = specs()["tcp6"]
	}
	s.TCPFlags = TCPSyn
	b, _ := Build(s)
	// Insert options: NOP, NOP, MSS, window scale (kind 3), NOP.
	opts := []byte{1, 1, 2, 4, byte(mss >> 8), byte(mss), 3, 3, 7, 1, 0, 0}
	var p Parsed
	p.Decode(b)
	nb := append(append(append([]byte{}, b[:p.PayloadOff]...), opts...), b[p.PayloadOff:]...)
	nb[p.L4Off+12] = byte((20+len(opts))/4) << 4
	if v6 {
		binary.BigEndian.PutUint16(nb[4:6], uint16(len(nb)-40))
	} else {
		binary.BigEndian.PutUint16(nb[2:4], uint16(len(nb)))
	}
	p.Decode(nb)
	FixChecksums(&p, nb)
	return nb
}

func TestClampMSS(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		b := synWithMSS(t, v6, 1460)
		var p Parsed
		p.Decode(b)
		if changed, err := ClampMSS(&p, b, 1500); changed || err != nil {
			t.Errorf("clamp above: %v %v", changed, err)
		}
		changed, err := ClampMSS(&p, b, 1200)
		if !changed || err != nil {
			t.Fatalf("clamp: %v %v", changed, err)
		}
		FixChecksums(&p, b)
		naiveChecksumOK(t, b)
		if got := binary.BigEndian.Uint16(b[p.L4Off+24:]); got != 1200 {
			t.Errorf("MSS %d after clamp", got)
		}
	}
	ack, _ := Build(specs()["tcp4"])
	var p Parsed
	p.Decode(ack)
	if _, err := ClampMSS(&p, ack, 1000); !errors.Is(err, ErrNotSYN) {
		t.Errorf("ack: %v", err)
	}
	// Hostile options: a length running past the header, a zero length.
	for _, opts := range [][]byte{{2, 40, 0, 0}, {8, 0, 0, 0}, {1, 1, 1, 2}} {
		b := synWithMSS(t, false, 1460)
		p.Decode(b)
		copy(b[p.L4Off+20:], opts)
		copy(b[p.L4Off+24:], []byte{1, 1, 1, 1, 1, 1, 1, 1})
		if changed, err := ClampMSS(&p, b, 500); changed || err == nil {
			t.Errorf("opts %x: %v %v", opts, changed, err)
		}
	}
}

func TestRewriteRefusals(t *testing.T) {
	b, _ := Build(specs()["udp4"])
	var p Parsed
	p.Decode(b[:len(b)-1])
	if Rewritable(&p) == nil {
		t.Error("a truncated copy is rewritable")
	}
	p.Decode(b)
	if _, err := SetPayload(&p, b, make([]byte, 70000)); !errors.Is(err, ErrTooLong) {
		t.Errorf("huge payload: %v", err)
	}
	if err := WriteAt(b, len(b)-1, []byte{1, 2}); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("write past the end: %v", err)
	}
	binary.BigEndian.PutUint16(b[6:8], 0x2000) // MF: a first fragment
	p.Decode(b)
	if _, err := SetPayload(&p, b, []byte("x")); !errors.Is(err, ErrFragment) {
		t.Errorf("fragment: %v", err)
	}
}

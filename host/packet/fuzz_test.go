package packet

import (
	"bytes"
	"testing"
)

// FuzzDecode checks that Decode never panics and that what it reports is
// consistent with the buffer: offsets it sets can be sliced, and the
// fixed transport header lies inside the buffer.
func FuzzDecode(f *testing.F) {
	seeds := [][]byte{
		mustBuild(f, Spec{Src: v4a, Dst: v4b, Proto: ProtoTCP, SrcPort: 1, DstPort: 2, TCPFlags: TCPSyn, Payload: []byte("abc")}),
		mustBuild(f, Spec{Src: v4a, Dst: v4b, Proto: ProtoUDP, SrcPort: 1, DstPort: 2, Payload: []byte("abc")}),
		mustBuild(f, Spec{Src: v4a, Dst: v4b, Proto: ProtoICMP, ICMPType: 8}),
		mustBuild(f, Spec{Src: v4a, Dst: v4b, Proto: ProtoSCTP, Payload: make([]byte, 12)}),
		mustBuild(f, Spec{Src: v6a, Dst: v6b, Proto: ProtoTCP, SrcPort: 1, DstPort: 2, TCPFlags: TCPAck}),
		mustBuild(f, Spec{Src: v6a, Dst: v6b, Proto: ProtoICMPv6, ICMPType: 128, Payload: []byte("abc")}),
		withExt(mustBuild(f, Spec{Src: v6a, Dst: v6b, Proto: ProtoUDP, SrcPort: 1, DstPort: 2}), hopByHop(), routing(), frag(0, true), dstOpts(2), ah()),
		withExt(mustBuild(f, Spec{Src: v6a, Dst: v6b, Proto: ProtoUDP}), frag(3, false)),
		{},
		{0x45},
		{0x60},
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Parsed
		p.Decode(b)
		_ = p.String()
		pay := p.Payload(b)

		if p.Family == 0 && p.Err == "" {
			t.Fatalf("Family 0 without Err: %+v", p)
		}
		if p.Family != 0 && p.Family != 4 && p.Family != 6 {
			t.Fatalf("Family %d", p.Family)
		}
		if p.Family == 4 && (!p.Src.Is4() || !p.Dst.Is4()) || p.Family == 6 && (!p.Src.Is6() || !p.Dst.Is6()) {
			t.Fatalf("addresses do not match family: %+v", p)
		}
		if p.L4Off >= 0 {
			if p.L4Off >= len(b) {
				t.Fatalf("L4Off %d outside a %d-byte buffer", p.L4Off, len(b))
			}
			if need := p.L4Off + fixedLen(p.Proto); need > len(b) && (p.Proto == ProtoTCP || p.Proto == ProtoUDP || p.Proto == ProtoSCTP) {
				t.Fatalf("L4Off %d set with a partial %s header in %d bytes", p.L4Off, ProtoName(p.Proto), len(b))
			}
			if p.NonFirstFragment {
				t.Fatalf("non-first fragment with a transport header: %+v", p)
			}
		}
		if p.PayloadOff >= 0 {
			if p.L4Off < 0 || p.PayloadOff < p.L4Off || p.PayloadOff > len(b) {
				t.Fatalf("PayloadOff %d (L4Off %d) in %d bytes", p.PayloadOff, p.L4Off, len(b))
			}
			if len(pay) > 0 && !bytes.Equal(pay, b[p.PayloadOff:p.PayloadOff+len(pay)]) {
				t.Fatalf("Payload is not b[PayloadOff:]")
			}
		} else if pay != nil {
			t.Fatalf("Payload %q with PayloadOff -1", pay)
		}
		if p.Len > 0 && len(pay) > 0 && p.PayloadOff+len(pay) > p.Len {
			t.Fatalf("Payload runs past Len %d", p.Len)
		}
		if (p.SrcPort != 0 || p.DstPort != 0 || p.TCPFlags != 0) && p.L4Off < 0 {
			t.Fatalf("transport fields without a transport header: %+v", p)
		}

		// Decoding the same bytes again, after other bytes, gives the same result.
		q := p
		p.Decode([]byte{0x45, 0, 0, 20, 0, 0, 0, 0, 1, 6, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8})
		p.Decode(b)
		if p != q {
			t.Fatalf("Decode is not a pure function of its input:\n%+v\n%+v", p, q)
		}
	})
}

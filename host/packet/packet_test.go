package packet

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

var (
	v4a = netip.MustParseAddr("10.0.0.1")
	v4b = netip.MustParseAddr("10.0.0.2")
	v6a = netip.MustParseAddr("2001:db8::1")
	v6b = netip.MustParseAddr("2001:db8::2")
)

func mustBuild(tb testing.TB, s Spec) []byte {
	tb.Helper()
	b, err := Build(s)
	if err != nil {
		tb.Fatalf("Build(%+v): %v", s, err)
	}
	return b
}

// onesSum is an independent ones' complement sum (for checking Build):
// it sums in 64 bits and folds once at the end.
func onesSum(parts ...[]byte) uint16 {
	var all []byte
	for _, p := range parts {
		all = append(all, p...)
	}
	if len(all)%2 == 1 {
		all = append(all, 0)
	}
	var s uint64
	for i := 0; i < len(all); i += 2 {
		s += uint64(binary.BigEndian.Uint16(all[i:]))
	}
	for s>>16 != 0 {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// checkChecksums verifies the IPv4 header checksum and the transport
// checksum of a packet without extension headers.
func checkChecksums(t *testing.T, b []byte, s Spec) {
	t.Helper()
	var pseudo []byte
	var l4 []byte
	if s.Src.Is4() {
		if got := onesSum(b[:20]); got != 0xffff {
			t.Errorf("IPv4 header checksum does not verify (sum %#04x)", got)
		}
		l4 = b[20:]
		pseudo = append(append([]byte{}, b[12:20]...), 0, s.Proto, byte(len(l4)>>8), byte(len(l4)))
	} else {
		l4 = b[40:]
		pseudo = append(append([]byte{}, b[8:40]...), 0, 0, byte(len(l4)>>8), byte(len(l4)), 0, 0, 0, s.Proto)
	}
	switch s.Proto {
	case ProtoTCP, ProtoUDP, ProtoICMPv6:
		if got := onesSum(pseudo, l4); got != 0xffff {
			t.Errorf("%s checksum does not verify (sum %#04x)", ProtoName(s.Proto), got)
		}
	case ProtoICMP:
		if got := onesSum(l4); got != 0xffff {
			t.Errorf("ICMP checksum does not verify (sum %#04x)", got)
		}
	}
}

func TestBuildDecodeRoundTrip(t *testing.T) {
	payload := []byte("hello, firewall")
	tests := []struct {
		name string
		spec Spec
	}{
		{"ipv4 tcp syn", Spec{Src: v4a, Dst: v4b, Proto: ProtoTCP, SrcPort: 40000, DstPort: 22, TCPFlags: TCPSyn, TTL: 64, Seq: 0x01020304}},
		{"ipv4 tcp psh-ack payload", Spec{Src: v4a, Dst: v4b, Proto: ProtoTCP, SrcPort: 443, DstPort: 51000, TCPFlags: TCPPsh | TCPAck, TTL: 3, Seq: 7, Ack: 0xfffffffe, Payload: payload}},
		{"ipv4 tcp all flags", Spec{Src: v4a, Dst: v4b, Proto: ProtoTCP, SrcPort: 1, DstPort: 65535, TCPFlags: 0xff, TTL: 255}},
		{"ipv4 udp", Spec{Src: v4a, Dst: v4b, Proto: ProtoUDP, SrcPort: 5353, DstPort: 53, TTL: 1, Payload: payload}},
		{"ipv4 udp odd payload", Spec{Src: v4a, Dst: v4b, Proto: ProtoUDP, SrcPort: 1000, DstPort: 2000, TTL: 9, Payload: []byte{0xff}}},
		{"ipv4 icmp echo", Spec{Src: v4a, Dst: v4b, Proto: ProtoICMP, ICMPType: 8, TTL: 64, Seq: 0x12340001, Payload: payload}},
		{"ipv4 icmp unreachable", Spec{Src: v4b, Dst: v4a, Proto: ProtoICMP, ICMPType: 3, ICMPCode: 3, TTL: 64}},
		{"ipv6 tcp syn-ack", Spec{Src: v6a, Dst: v6b, Proto: ProtoTCP, SrcPort: 22, DstPort: 40000, TCPFlags: TCPSyn | TCPAck, TTL: 64, Seq: 1, Ack: 2}},
		{"ipv6 udp", Spec{Src: v6a, Dst: v6b, Proto: ProtoUDP, SrcPort: 546, DstPort: 547, TTL: 255, Payload: payload}},
		{"ipv6 icmpv6 echo", Spec{Src: v6a, Dst: v6b, Proto: ProtoICMPv6, ICMPType: 128, TTL: 64, Seq: 0xabcd0002, Payload: payload}},
		{"ipv6 icmpv6 packet too big", Spec{Src: v6b, Dst: v6a, Proto: ProtoICMPv6, ICMPType: 2, ICMPCode: 0, TTL: 17, Seq: 1280}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustBuild(t, tt.spec)
			checkChecksums(t, b, tt.spec)

			s := tt.spec
			want := Parsed{Proto: s.Proto, Src: s.Src, Dst: s.Dst, Len: len(b), TTL: s.TTL}
			want.Family, want.L4Off = 6, 40
			if s.Src.Is4() {
				want.Family, want.L4Off = 4, 20
			}
			switch s.Proto {
			case ProtoTCP:
				want.SrcPort, want.DstPort, want.TCPFlags = s.SrcPort, s.DstPort, s.TCPFlags
				want.PayloadOff = want.L4Off + 20
				l4 := b[want.L4Off:]
				if seq, ack := binary.BigEndian.Uint32(l4[4:]), binary.BigEndian.Uint32(l4[8:]); seq != s.Seq || ack != s.Ack {
					t.Errorf("built seq/ack = %d/%d, want %d/%d", seq, ack, s.Seq, s.Ack)
				}
			case ProtoUDP:
				want.SrcPort, want.DstPort = s.SrcPort, s.DstPort
				want.PayloadOff = want.L4Off + 8
				if ul := int(binary.BigEndian.Uint16(b[want.L4Off+4:])); ul != len(b)-want.L4Off {
					t.Errorf("built UDP length = %d, want %d", ul, len(b)-want.L4Off)
				}
			default:
				want.ICMPType, want.ICMPCode = s.ICMPType, s.ICMPCode
				want.PayloadOff = want.L4Off + 8
				if rest := binary.BigEndian.Uint32(b[want.L4Off+4:]); rest != s.Seq {
					t.Errorf("built ICMP rest of header = %#x, want %#x", rest, s.Seq)
				}
			}

			var p Parsed
			p.Decode(b)
			if p != want {
				t.Errorf("Decode:\n got %+v\nwant %+v", p, want)
			}
			if got := p.Payload(b); !bytes.Equal(got, s.Payload) {
				t.Errorf("Payload = %q, want %q", got, s.Payload)
			}
		})
	}
}

func TestBuildDefaultsAndErrors(t *testing.T) {
	b := mustBuild(t, Spec{Src: v6a, Dst: v6b, Proto: ProtoUDP})
	var p Parsed
	p.Decode(b)
	if p.TTL != 64 {
		t.Errorf("TTL 0 in Spec: decoded hop limit %d, want the default 64", p.TTL)
	}
	b = mustBuild(t, Spec{Src: v4a, Dst: v4b, Proto: ProtoGRE, Payload: []byte{0, 0, 0x08, 0}})
	p.Decode(b)
	if p.Proto != ProtoGRE || p.L4Off != 20 || p.PayloadOff != -1 || len(b) != 24 {
		t.Errorf("other protocol: got %+v (len %d), want payload right after the IP header", p, len(b))
	}

	bad := []struct {
		name string
		spec Spec
	}{
		{"no addresses", Spec{Proto: ProtoTCP}},
		{"mixed families", Spec{Src: v4a, Dst: v6b, Proto: ProtoTCP}},
		{"icmp over ipv6", Spec{Src: v6a, Dst: v6b, Proto: ProtoICMP}},
		{"icmpv6 over ipv4", Spec{Src: v4a, Dst: v4b, Proto: ProtoICMPv6}},
		{"ipv4 too large", Spec{Src: v4a, Dst: v4b, Proto: ProtoUDP, Payload: make([]byte, 65535-28+1)}},
		{"ipv6 too large", Spec{Src: v6a, Dst: v6b, Proto: ProtoUDP, Payload: make([]byte, 65535-8+1)}},
	}
	for _, tt := range bad {
		if _, err := Build(tt.spec); err == nil {
			t.Errorf("%s: Build succeeded, want an error", tt.name)
		}
	}
	if _, err := Build(Spec{Src: v4a, Dst: v4b, Proto: ProtoUDP, Payload: make([]byte, 65535-28)}); err != nil {
		t.Errorf("largest IPv4 UDP packet: %v", err)
	}
}

// ext is one IPv6 extension header for withExt; its first byte (next
// header) is filled in by withExt.
type ext struct {
	typ  uint8
	data []byte
}

func hopByHop() ext { return ext{ProtoHopByHop, []byte{0, 0, 1, 4, 0, 0, 0, 0}} } // PadN
func routing() ext  { return ext{ProtoRouting, []byte{0, 0, 4, 0, 0, 0, 0, 0}} }

// dstOpts returns a destination options header of 8*units bytes.
func dstOpts(units int) ext {
	d := make([]byte, 8*units)
	d[1] = byte(units - 1)
	d[2], d[3] = 1, byte(len(d)-4) // PadN
	return ext{ProtoDstOpts, d}
}

// ah returns an authentication header with a 12-byte ICV (24 bytes).
func ah() ext {
	d := make([]byte, 24)
	d[1] = 24/4 - 2
	binary.BigEndian.PutUint32(d[4:], 0x1000) // SPI
	return ext{ProtoAH, d}
}

// frag returns a fragment header; offset is in 8-byte units.
func frag(offset uint16, more bool) ext {
	d := make([]byte, 8)
	v := offset << 3
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(d[2:], v)
	binary.BigEndian.PutUint32(d[4:], 0xdeadbeef)
	return ext{ProtoFragment, d}
}

// withExt inserts extension headers after the fixed header of an IPv6
// packet b, fixing the next-header chain and the payload length.
func withExt(b []byte, exts ...ext) []byte {
	out := append([]byte{}, b[:40]...)
	last := b[6]
	for i, e := range exts {
		d := append([]byte{}, e.data...)
		if i+1 < len(exts) {
			d[0] = exts[i+1].typ
		} else {
			d[0] = last
		}
		out = append(out, d...)
	}
	out = append(out, b[40:]...)
	if len(exts) > 0 {
		out[6] = exts[0].typ
	}
	binary.BigEndian.PutUint16(out[4:], uint16(len(out)-40))
	return out
}

func TestIPv6ExtensionHeaders(t *testing.T) {
	udp := mustBuild(t, Spec{Src: v6a, Dst: v6b, Proto: ProtoUDP, SrcPort: 1234, DstPort: 53, TTL: 9, Payload: []byte("query")})
	tcp := mustBuild(t, Spec{Src: v6a, Dst: v6b, Proto: ProtoTCP, SrcPort: 5555, DstPort: 443, TCPFlags: TCPAck, TTL: 9, Payload: []byte("data")})
	nine := make([]ext, 9)
	for i := range nine {
		nine[i] = dstOpts(1)
	}

	type want struct {
		proto            uint8
		l4Off, payOff    int
		srcPort, dstPort uint16
		frag, nonFirst   bool
		err              string
		payload          string
	}
	tests := []struct {
		name string
		b    []byte
		want want
	}{
		{"hop-by-hop + first fragment + udp", withExt(udp, hopByHop(), frag(0, true)),
			want{ProtoUDP, 56, 64, 1234, 53, true, false, "", "query"}},
		{"atomic fragment", withExt(udp, frag(0, false)),
			want{ProtoUDP, 48, 56, 1234, 53, true, false, "", "query"}},
		{"non-first fragment", withExt(udp, hopByHop(), frag(185, false)),
			want{ProtoUDP, -1, -1, 0, 0, true, true, "", ""}},
		{"hop-by-hop + routing + dstopts + ah + tcp", withExt(tcp, hopByHop(), routing(), dstOpts(2), ah()),
			want{ProtoTCP, 96, 116, 5555, 443, false, false, "", "data"}},
		{"eight headers then udp", withExt(udp, nine[:8]...),
			want{ProtoUDP, 104, 112, 1234, 53, false, false, "", "query"}},
		{"nine headers", withExt(udp, nine...),
			want{ProtoDstOpts, -1, -1, 0, 0, false, false, ReasonTooManyExt, ""}},
		{"esp stops the walk", withExt(mustBuild(t, Spec{Src: v6a, Dst: v6b, Proto: ProtoESP, Payload: make([]byte, 16)}), hopByHop()),
			want{ProtoESP, 48, -1, 0, 0, false, false, "", ""}},
		{"no next header", withExt(mustBuild(t, Spec{Src: v6a, Dst: v6b, Proto: ProtoNoNext, Payload: make([]byte, 8)}), dstOpts(1)),
			want{ProtoNoNext, -1, -1, 0, 0, false, false, "", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Parsed
			p.Decode(tt.b)
			w := tt.want
			got := want{p.Proto, p.L4Off, p.PayloadOff, p.SrcPort, p.DstPort, p.Fragment, p.NonFirstFragment, p.Err, string(p.Payload(tt.b))}
			if got != w {
				t.Errorf("got  %+v\nwant %+v", got, w)
			}
			if p.Family != 6 || p.Src != v6a || p.Dst != v6b || p.Len != len(tt.b) || p.TTL != tt.b[7] || p.Truncated {
				t.Errorf("IP fields: %+v (buffer %d bytes)", p, len(tt.b))
			}
		})
	}

	// An extension header whose length field reaches past the payload length.
	lying := withExt(udp, hopByHop())
	lying[41] = 255 // 2048 bytes
	var p Parsed
	p.Decode(lying)
	if p.Err != ReasonExtBeyondIP || p.L4Off != -1 || p.Truncated {
		t.Errorf("lying hop-by-hop length: got %+v, want Err %q", p, ReasonExtBeyondIP)
	}
	// The same when the packet claims to be longer than the buffer: truncated, not malformed.
	binary.BigEndian.PutUint16(lying[4:], 4000)
	p.Decode(lying)
	if p.Err != "" || !p.Truncated || p.L4Off != -1 || p.Proto != ProtoHopByHop {
		t.Errorf("hop-by-hop cut by the buffer: got %+v, want Truncated and no Err", p)
	}
}

// fixedLen is the transport header size Decode needs to set L4Off.
func fixedLen(proto uint8) int {
	switch proto {
	case ProtoTCP:
		return 20
	case ProtoSCTP:
		return 12
	default:
		return 8
	}
}

func TestTruncatedAtEveryLength(t *testing.T) {
	tcpOpts := mustBuild(t, Spec{Src: v4a, Dst: v4b, Proto: ProtoTCP, SrcPort: 1, DstPort: 2, TCPFlags: TCPSyn, Payload: []byte{2, 4, 5, 0xb4, 'x', 'y'}})
	tcpOpts[32] = 6 << 4 // data offset 24: the first 4 payload bytes become an MSS option
	ipOpts := mustBuild(t, Spec{Src: v4a, Dst: v4b, Proto: ProtoUDP, SrcPort: 7, DstPort: 8, Payload: []byte("abc")})
	ipOpts = append(append(append([]byte{}, ipOpts[:20]...), 1, 1, 1, 0), ipOpts[20:]...) // NOP NOP NOP EOL
	ipOpts[0] = 0x46
	binary.BigEndian.PutUint16(ipOpts[2:], uint16(len(ipOpts)))

	packets := map[string][]byte{
		"ipv4 tcp options": tcpOpts,
		"ipv4 ip options":  ipOpts,
		"ipv4 icmp":        mustBuild(t, Spec{Src: v4a, Dst: v4b, Proto: ProtoICMP, ICMPType: 8, Payload: []byte("ping")}),
		"ipv6 ext tcp": withExt(mustBuild(t, Spec{Src: v6a, Dst: v6b, Proto: ProtoTCP, SrcPort: 3, DstPort: 4, TCPFlags: TCPFin, Payload: []byte("bye")}),
			hopByHop(), frag(0, true), dstOpts(2)),
		"ipv6 icmpv6": mustBuild(t, Spec{Src: v6a, Dst: v6b, Proto: ProtoICMPv6, ICMPType: 135, Payload: make([]byte, 16)}),
		"ipv6 udp":    mustBuild(t, Spec{Src: v6a, Dst: v6b, Proto: ProtoUDP, SrcPort: 9, DstPort: 10, Payload: []byte("u")}),
	}
	for name, full := range packets {
		t.Run(name, func(t *testing.T) {
			var whole Parsed
			whole.Decode(full)
			if whole.Err != "" || whole.Truncated || whole.PayloadOff < 0 {
				t.Fatalf("full packet does not decode cleanly: %+v", whole)
			}
			ipHdr := 20
			if whole.Family == 6 {
				ipHdr = 40
			}
			for n := range len(full) {
				b := full[:n:n]
				var p Parsed
				p.Decode(b)
				if !p.Truncated {
					t.Errorf("len %d: Truncated not set: %+v", n, p)
				}
				if n < ipHdr {
					if p.Family != 0 || p.Err == "" {
						t.Errorf("len %d: short IP header decoded as %+v, want Family 0 and Err", n, p)
					}
					continue
				}
				if p.Err != "" || p.Family != whole.Family || p.Src != whole.Src || p.Dst != whole.Dst || p.Len != whole.Len || p.TTL != whole.TTL {
					t.Errorf("len %d: IP fields differ from the full decode: %+v", n, p)
				}
				if n >= whole.L4Off+fixedLen(whole.Proto) {
					if p.Proto != whole.Proto || p.L4Off != whole.L4Off || p.SrcPort != whole.SrcPort || p.DstPort != whole.DstPort ||
						p.TCPFlags != whole.TCPFlags || p.ICMPType != whole.ICMPType || p.ICMPCode != whole.ICMPCode {
						t.Errorf("len %d: transport fields differ: %+v, want %+v", n, p, whole)
					}
				} else if p.L4Off != -1 || p.SrcPort != 0 || p.DstPort != 0 {
					t.Errorf("len %d: transport header decoded from a partial header: %+v", n, p)
				}
				if n >= whole.PayloadOff {
					if p.PayloadOff != whole.PayloadOff {
						t.Errorf("len %d: PayloadOff %d, want %d", n, p.PayloadOff, whole.PayloadOff)
					}
					if got, want := p.Payload(b), full[whole.PayloadOff:n]; !bytes.Equal(got, want) {
						t.Errorf("len %d: Payload %q, want %q", n, got, want)
					}
				} else if p.PayloadOff != -1 || p.Payload(b) != nil {
					t.Errorf("len %d: PayloadOff %d set before the transport header ends at %d", n, p.PayloadOff, whole.PayloadOff)
				}
			}
		})
	}
}

func TestMalformed(t *testing.T) {
	tcp4 := mustBuild(t, Spec{Src: v4a, Dst: v4b, Proto: ProtoTCP, SrcPort: 1000, DstPort: 80, TCPFlags: TCPAck, Payload: []byte("GET /")})
	udp4 := mustBuild(t, Spec{Src: v4a, Dst: v4b, Proto: ProtoUDP, SrcPort: 1000, DstPort: 53, Payload: []byte("q")})
	udp6 := mustBuild(t, Spec{Src: v6a, Dst: v6b, Proto: ProtoUDP, SrcPort: 1000, DstPort: 53, Payload: []byte("q")})
	mod := func(b []byte, f func(b []byte)) []byte {
		c := append([]byte{}, b...)
		f(c)
		return c
	}
	setLen := func(n int) func([]byte) {
		return func(b []byte) { binary.BigEndian.PutUint16(b[2:], uint16(n)) }
	}

	type want struct {
		family           uint8
		proto            uint8
		l4Off, payOff    int
		srcPort, dstPort uint16
		frag, nonFirst   bool
		truncated        bool
		err              string
	}
	tests := []struct {
		name string
		b    []byte
		want want
	}{
		{"nil", nil, want{0, 0, -1, -1, 0, 0, false, false, true, ReasonEmpty}},
		{"version 5", mod(tcp4, func(b []byte) { b[0] = 0x55 }), want{0, 0, -1, -1, 0, 0, false, false, false, ReasonBadVersion}},
		{"version 0", mod(tcp4, func(b []byte) { b[0] = 0x05 }), want{0, 0, -1, -1, 0, 0, false, false, false, ReasonBadVersion}},
		{"ihl 4", mod(tcp4, func(b []byte) { b[0] = 0x44 }), want{0, 0, -1, -1, 0, 0, false, false, false, ReasonBadIHL}},
		{"ihl 0", mod(tcp4, func(b []byte) { b[0] = 0x40 }), want{0, 0, -1, -1, 0, 0, false, false, false, ReasonBadIHL}},
		{"ihl 15 beyond total length", mod(tcp4, func(b []byte) { b[0] = 0x4f }), want{4, ProtoTCP, -1, -1, 0, 0, false, false, false, ReasonIPv4Options}},
		{"total length below header", mod(tcp4, setLen(19)), want{4, ProtoTCP, -1, -1, 0, 0, false, false, false, ReasonBadTotalLen}},
		{"total length 0 on a small buffer", mod(tcp4, setLen(0)), want{4, ProtoTCP, -1, -1, 0, 0, false, false, false, ReasonBadTotalLen}},
		{"total length cuts the tcp header", mod(tcp4, setLen(30)), want{4, ProtoTCP, -1, -1, 0, 0, false, false, false, ReasonL4BeyondIP}},
		{"total length cuts the udp header", mod(udp4, setLen(24)), want{4, ProtoUDP, -1, -1, 0, 0, false, false, false, ReasonL4BeyondIP}},
		{"total length beyond buffer", mod(tcp4, setLen(1500)), want{4, ProtoTCP, 20, 40, 1000, 80, false, false, true, ""}},
		{"tcp data offset 3", mod(tcp4, func(b []byte) { b[32] = 3 << 4 }), want{4, ProtoTCP, 20, -1, 1000, 80, false, false, false, ReasonBadTCPOffset}},
		{"tcp data offset 0", mod(tcp4, func(b []byte) { b[32] = 0 }), want{4, ProtoTCP, 20, -1, 1000, 80, false, false, false, ReasonBadTCPOffset}},
		{"tcp data offset lies", mod(tcp4, func(b []byte) { b[32] = 15 << 4 }), want{4, ProtoTCP, 20, -1, 1000, 80, false, false, false, ReasonTCPOptsBeyond}},
		{"tcp data offset beyond a short buffer", mod(tcp4, func(b []byte) { b[32] = 15 << 4; setLen(100)(b) }), want{4, ProtoTCP, 20, -1, 1000, 80, false, false, true, ""}},
		{"ipv4 more fragments", mod(tcp4, func(b []byte) { b[6] = 0x20 }), want{4, ProtoTCP, 20, 40, 1000, 80, true, false, false, ""}},
		{"ipv4 non-first fragment", mod(tcp4, func(b []byte) { b[6], b[7] = 0x00, 0xb9 }), want{4, ProtoTCP, -1, -1, 0, 0, true, true, false, ""}},
		{"ipv4 df only", tcp4, want{4, ProtoTCP, 20, 40, 1000, 80, false, false, false, ""}},
		{"ipv6 short header", udp6[:39], want{0, 0, -1, -1, 0, 0, false, false, true, ReasonShortIPv6}},
		{"ipv4 short header", tcp4[:19], want{0, 0, -1, -1, 0, 0, false, false, true, ReasonShortIPv4}},
		{"ipv6 payload length cuts udp", mod(udp6, func(b []byte) { b[5] = 4 }), want{6, ProtoUDP, -1, -1, 0, 0, false, false, false, ReasonL4BeyondIP}},
		{"ipv6 payload length 0", mod(udp6, func(b []byte) { b[5] = 0 }), want{6, ProtoUDP, -1, -1, 0, 0, false, false, false, ReasonL4BeyondIP}},
		{"icmp number inside ipv6", mod(udp6, func(b []byte) { b[6] = ProtoICMP }), want{6, ProtoICMP, 40, -1, 0, 0, false, false, false, ""}},
		{"sctp", mustBuild(t, Spec{Src: v4a, Dst: v4b, Proto: ProtoSCTP, Payload: []byte{0x0b, 0xb8, 0x0b, 0xb9, 0, 0, 0, 1, 0, 0, 0, 0}}),
			want{4, ProtoSCTP, 20, 32, 3000, 3001, false, false, false, ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Parsed
			p.Decode(tt.b)
			got := want{p.Family, p.Proto, p.L4Off, p.PayloadOff, p.SrcPort, p.DstPort, p.Fragment, p.NonFirstFragment, p.Truncated, p.Err}
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
			if p.Family == 0 && (p.Src.IsValid() || p.Dst.IsValid() || p.Len != 0) {
				t.Errorf("undecodable packet has IP fields: %+v", p)
			}
		})
	}
}

func TestPayloadBounds(t *testing.T) {
	b := mustBuild(t, Spec{Src: v4a, Dst: v4b, Proto: ProtoUDP, SrcPort: 1, DstPort: 2, Payload: []byte("data")})
	padded := append(append([]byte{}, b...), "TRAILER"...)
	var p Parsed
	p.Decode(padded)
	if got := p.Payload(padded); string(got) != "data" {
		t.Errorf("bytes after the total length leak into Payload: %q", got)
	}
	if got := p.Payload(padded[:30]); string(got) != "da" {
		t.Errorf("Payload of a shorter buffer = %q, want %q", got, "da")
	}
	if got := p.Payload(padded[:10]); got != nil {
		t.Errorf("Payload of a buffer ending before PayloadOff = %q, want nil", got)
	}
	empty := mustBuild(t, Spec{Src: v4a, Dst: v4b, Proto: ProtoTCP, TCPFlags: TCPSyn})
	p.Decode(empty)
	if got := p.Payload(empty); got != nil {
		t.Errorf("Payload of a packet without data = %q, want nil", got)
	}
}

func TestUnknownLength(t *testing.T) {
	const size = 70000 // over 64 KiB: the length field cannot hold it
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i)
	}
	v4 := mustBuild(t, Spec{Src: v4a, Dst: v4b, Proto: ProtoTCP, SrcPort: 1, DstPort: 2, TCPFlags: TCPAck})
	v4 = append(v4, data...)
	binary.BigEndian.PutUint16(v4[2:], 0)
	v6 := mustBuild(t, Spec{Src: v6a, Dst: v6b, Proto: ProtoTCP, SrcPort: 1, DstPort: 2, TCPFlags: TCPAck})
	v6 = append(v6, data...)
	binary.BigEndian.PutUint16(v6[4:], 0)
	for _, b := range [][]byte{v4, v6} {
		var p Parsed
		p.Decode(b)
		if p.Len != 0 || p.Err != "" || p.Truncated || p.SrcPort != 1 || p.DstPort != 2 {
			t.Errorf("IPv%d with length field 0 on a %d-byte buffer: %+v", p.Family, len(b), p)
		}
		if got := p.Payload(b); !bytes.Equal(got, data) {
			t.Errorf("IPv%d: Payload has %d bytes, want %d", p.Family, len(got), len(data))
		}
	}
}

func TestString(t *testing.T) {
	tests := []struct {
		b    []byte
		want string
	}{
		{mustBuild(t, Spec{Src: v4a, Dst: v4b, Proto: ProtoTCP, SrcPort: 1234, DstPort: 22, TCPFlags: TCPSyn}),
			"tcp 10.0.0.1:1234 > 10.0.0.2:22 [S] len=40"},
		{mustBuild(t, Spec{Src: v6a, Dst: v6b, Proto: ProtoTCP, SrcPort: 22, DstPort: 1234, TCPFlags: TCPSyn | TCPAck}),
			"tcp [2001:db8::1]:22 > [2001:db8::2]:1234 [S.] len=60"},
		{mustBuild(t, Spec{Src: v6a, Dst: v6b, Proto: ProtoUDP, SrcPort: 5353, DstPort: 53, Payload: make([]byte, 10)})[:50],
			"udp [2001:db8::1]:5353 > [2001:db8::2]:53 len=58 truncated"},
		{mustBuild(t, Spec{Src: v4a, Dst: v4b, Proto: ProtoICMP, ICMPType: 8}),
			"icmp 10.0.0.1 > 10.0.0.2 type=8 code=0 len=28"},
		{withExt(mustBuild(t, Spec{Src: v6a, Dst: v6b, Proto: ProtoUDP}), frag(2, false)),
			"udp 2001:db8::1 > 2001:db8::2 len=56 frag+"},
		{[]byte{0x45, 0, 0, 0}, `invalid: short IPv4 header`},
		{append([]byte{0x45, 0, 0, 10}, make([]byte, 16)...), `hopopt 0.0.0.0 > 0.0.0.0 len=10 err="IPv4 total length below header length"`},
	}
	for _, tt := range tests {
		var p Parsed
		p.Decode(tt.b)
		if got := p.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
	if got := TCPFlagString(TCPFin | TCPPsh | TCPAck | TCPCwr); got != "FP.W" {
		t.Errorf("TCPFlagString = %q, want %q", got, "FP.W")
	}
	if got := TCPFlagString(0); got != "none" {
		t.Errorf("TCPFlagString(0) = %q, want none", got)
	}
}

func TestDecodeDoesNotAllocate(t *testing.T) {
	packets := [][]byte{
		mustBuild(t, Spec{Src: v4a, Dst: v4b, Proto: ProtoTCP, SrcPort: 1, DstPort: 2, TCPFlags: TCPSyn, Payload: []byte("x")}),
		mustBuild(t, Spec{Src: v6a, Dst: v6b, Proto: ProtoUDP, SrcPort: 1, DstPort: 2, Payload: []byte("x")}),
		withExt(mustBuild(t, Spec{Src: v6a, Dst: v6b, Proto: ProtoICMPv6, ICMPType: 128}), hopByHop(), frag(0, true)),
		{0x45, 0, 0},
		{0x99},
	}
	var p Parsed
	n := 0
	allocs := testing.AllocsPerRun(1000, func() {
		for _, b := range packets {
			p.Decode(b)
			n += len(p.Payload(b))
		}
	})
	if allocs != 0 {
		t.Errorf("Decode and Payload allocate %.1f times per run, want 0", allocs)
	}
}

func BenchmarkDecode(b *testing.B) {
	payload := make([]byte, 64)
	cases := []struct {
		name string
		spec Spec
	}{
		{"ipv4-tcp", Spec{Src: v4a, Dst: v4b, Proto: ProtoTCP, SrcPort: 40000, DstPort: 443, TCPFlags: TCPAck | TCPPsh, Payload: payload}},
		{"ipv6-udp", Spec{Src: v6a, Dst: v6b, Proto: ProtoUDP, SrcPort: 40000, DstPort: 53, Payload: payload}},
	}
	for _, c := range cases {
		pkt := mustBuild(b, c.spec)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(pkt)))
			var p Parsed
			for b.Loop() {
				p.Decode(pkt)
			}
			if p.DstPort != c.spec.DstPort {
				b.Fatalf("decoded %+v", p)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
		})
	}
}

// The flag table agrees with the header constants, by name and by letter.
func TestTCPFlagTable(t *testing.T) {
	for _, c := range []struct {
		name   string
		letter rune
		bit    uint8
	}{{"fin", 'F', TCPFin}, {"syn", 'S', TCPSyn}, {"rst", 'R', TCPRst}, {"psh", 'P', TCPPsh},
		{"ack", 'A', TCPAck}, {"urg", 'U', TCPUrg}, {"ece", 'E', TCPEce}, {"cwr", 'C', TCPCwr}} {
		if b, ok := TCPFlagByName(c.name); !ok || b != c.bit {
			t.Errorf("TCPFlagByName(%q) = %#x, %v", c.name, b, ok)
		}
		for _, r := range []rune{c.letter, c.letter - 'A' + 'a'} {
			if b, ok := TCPFlagByLetter(r); !ok || b != c.bit {
				t.Errorf("TCPFlagByLetter(%q) = %#x, %v", r, b, ok)
			}
		}
	}
	for _, bad := range []string{"", "SYN", "x"} {
		if _, ok := TCPFlagByName(bad); ok {
			t.Errorf("TCPFlagByName(%q) accepted", bad)
		}
	}
	if _, ok := TCPFlagByLetter('x'); ok {
		t.Error("TCPFlagByLetter('x') accepted")
	}
}

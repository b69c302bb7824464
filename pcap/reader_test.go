package pcap

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

func TestClassicBigEndianLiteral(t *testing.T) {
	// A big-endian, microsecond, LINKTYPE_RAW file with one IPv4/UDP
	// packet 10.0.0.1:53 -> 10.0.0.2:4660, written out by hand.
	file, err := hex.DecodeString("" +
		"a1b2c3d4" + "0002" + "0004" + "00000000" + "00000000" + "0000ffff" + "00000065" +
		"5f5e1000" + "000f423f" + "0000001c" + "0000001c" +
		"4500001c00000000401100000a0000010a000002" + "0035123400080000")
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if r.LinkType() != LinkTypeRaw {
		t.Errorf("LinkType = %d, want %d", r.LinkType(), LinkTypeRaw)
	}
	p, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	want := time.Unix(1600000000, 999999000).UTC()
	if p.N != 1 || !p.Time.Equal(want) || p.CapLen != 28 || p.OrigLen != 28 || p.Skipped != "" {
		t.Errorf("got N=%d Time=%v CapLen=%d OrigLen=%d Skipped=%q", p.N, p.Time, p.CapLen, p.OrigLen, p.Skipped)
	}
	if !bytes.Equal(p.Data, file[40:]) {
		t.Errorf("Data = %x, want %x", p.Data, file[40:])
	}
	if _, err := r.Next(); err != io.EOF {
		t.Errorf("after the last packet: %v, want io.EOF", err)
	}
}

func TestClassicNanosecond(t *testing.T) {
	pkt := ipv4("192.0.2.1", "192.0.2.2", 17, udp(1, 2, "hi"))
	for _, order := range []bo{binary.LittleEndian, binary.BigEndian} {
		file := classic(order, magicNano, LinkTypeIPv4, record{sec: 1700000000, frac: 123456789, data: pkt})
		got := readAll(t, file)
		if len(got) != 1 {
			t.Fatalf("%v: %d packets, want 1", order, len(got))
		}
		if want := time.Unix(1700000000, 123456789); !got[0].Time.Equal(want) {
			t.Errorf("%v: Time = %v, want %v", order, got[0].Time, want)
		}
		if !bytes.Equal(got[0].Data, pkt) || got[0].LinkType != LinkTypeIPv4 {
			t.Errorf("%v: Data = %x LinkType %d", order, got[0].Data, got[0].LinkType)
		}
	}
}

func TestRawLinkTypes(t *testing.T) {
	v4 := ipv4("192.0.2.1", "192.0.2.2", 17, udp(1, 2, "x"))
	v6 := ipv6("2001:db8::1", "2001:db8::2", 17, udp(1, 2, "y"))
	for _, tc := range []struct {
		link    uint32
		data    []byte
		skipped string
	}{
		{LinkTypeRaw, v4, ""},
		{LinkTypeRaw, v6, ""},
		{LinkTypeRawOld, v6, ""},
		{LinkTypeIPv4, v4, ""},
		{LinkTypeIPv6, v6, ""},
		{LinkTypeIPv4, v6, "not IPv4"},
		{LinkTypeIPv6, v4, "not IPv6"},
		{LinkTypeRaw, []byte{0x20, 0, 0, 0}, "not IP: version 2"},
		{LinkTypeRaw, nil, "empty packet"},
		{147, v4, "unsupported link type 147"},
	} {
		got := readAll(t, classic(binary.LittleEndian, magicMicro, tc.link, record{data: tc.data}))
		if len(got) != 1 {
			t.Fatalf("link %d: %d packets", tc.link, len(got))
		}
		if got[0].Skipped != tc.skipped {
			t.Errorf("link %d %x: Skipped = %q, want %q", tc.link, tc.data, got[0].Skipped, tc.skipped)
		}
		if tc.skipped == "" && !bytes.Equal(got[0].Data, tc.data) {
			t.Errorf("link %d: Data = %x, want %x", tc.link, got[0].Data, tc.data)
		}
		if tc.skipped != "" && got[0].Data != nil {
			t.Errorf("link %d: skipped packet has Data %x", tc.link, got[0].Data)
		}
	}
}

func TestEthernetVLANAndSkipped(t *testing.T) {
	v4 := ipv4("10.1.1.1", "10.1.1.2", 17, udp(1000, 53, "q"))
	v6 := ipv6("2001:db8::1", "2001:db8::2", 17, udp(1000, 53, "q"))
	// A short IPv4 packet padded to Ethernet's 60-byte minimum, with a
	// 4-byte FCS-like trailer: Data must stop at the IP total length.
	padded := append(ether(0x0800, v4), make([]byte, 60-14-len(v4)+4)...)
	file := classic(binary.LittleEndian, magicMicro, LinkTypeEthernet,
		record{sec: 1, data: padded},
		record{sec: 2, data: arp()},
		record{sec: 3, data: ether(0x86dd, v6, 0x8100)},
		record{sec: 4, data: ether(0x0800, v4, 0x88a8, 0x8100)},
		record{sec: 5, data: ether(0x0800, v4, 0x88a8, 0x8100, 0x8100)},
		record{sec: 6, data: ether(0x0800, nil)[:10]},
		record{sec: 7, data: ether(0x0800, v4)},
	)
	got := readAll(t, file)
	want := []struct {
		data    []byte
		skipped string
	}{
		{v4, ""},
		{nil, "not IP: ethertype 0x0806"},
		{v6, ""},
		{v4, ""},
		{nil, "more than 2 VLAN tags"},
		{nil, "truncated Ethernet header (10 bytes)"},
		{v4, ""},
	}
	if len(got) != len(want) {
		t.Fatalf("%d packets, want %d", len(got), len(want))
	}
	for i, w := range want {
		p := got[i]
		if p.N != i+1 || p.Time.Unix() != int64(i+1) {
			t.Errorf("packet %d: N = %d, Time = %v", i+1, p.N, p.Time)
		}
		if p.Skipped != w.skipped || !bytes.Equal(p.Data, w.data) {
			t.Errorf("packet %d: Skipped %q Data %x, want %q %x", i+1, p.Skipped, p.Data, w.skipped, w.data)
		}
	}
	if got[0].CapLen != 64 || got[0].OrigLen != 64 {
		t.Errorf("padded frame: CapLen %d OrigLen %d, want the frame's 64", got[0].CapLen, got[0].OrigLen)
	}
}

func TestLinuxCookedAndLoopback(t *testing.T) {
	v4 := ipv4("10.1.1.1", "10.1.1.2", 17, udp(1000, 53, "q"))
	v6 := ipv6("2001:db8::1", "2001:db8::2", 17, udp(1000, 53, "q"))
	sll := func(proto uint16, payload []byte) []byte {
		h := []byte{0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0}
		return append(binary.BigEndian.AppendUint16(h, proto), payload...)
	}
	sll2 := func(proto uint16, payload []byte) []byte {
		h := binary.BigEndian.AppendUint16(nil, proto)
		h = append(h, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0)
		return append(h, payload...)
	}
	null := func(order bo, fam uint32, payload []byte) []byte {
		return append(order.AppendUint32(nil, fam), payload...)
	}
	for _, tc := range []struct {
		name    string
		link    uint32
		frame   []byte
		want    []byte
		skipped string
	}{
		{"sll v4", LinkTypeLinuxSLL, sll(0x0800, v4), v4, ""},
		{"sll v6", LinkTypeLinuxSLL, sll(0x86dd, v6), v6, ""},
		{"sll arp", LinkTypeLinuxSLL, sll(0x0806, make([]byte, 28)), nil, "not IP: ethertype 0x0806"},
		{"sll short", LinkTypeLinuxSLL, sll(0x0800, nil)[:12], nil, "truncated Linux cooked header (12 bytes)"},
		{"sll2 v4", LinkTypeLinuxSLL2, sll2(0x0800, v4), v4, ""},
		{"sll2 v6", LinkTypeLinuxSLL2, sll2(0x86dd, v6), v6, ""},
		{"null le inet", LinkTypeNull, null(binary.LittleEndian, 2, v4), v4, ""},
		{"null be inet6 bsd", LinkTypeNull, null(binary.BigEndian, 24, v6), v6, ""},
		{"null le inet6 darwin", LinkTypeNull, null(binary.LittleEndian, 30, v6), v6, ""},
		{"null other", LinkTypeNull, null(binary.LittleEndian, 7, v4), nil, "not IP: address family 7"},
		{"loop inet", LinkTypeLoop, null(binary.BigEndian, 2, v4), v4, ""},
	} {
		got := readAll(t, classic(binary.BigEndian, magicMicro, tc.link, record{data: tc.frame}))
		if len(got) != 1 || got[0].Skipped != tc.skipped || !bytes.Equal(got[0].Data, tc.want) {
			t.Errorf("%s: got %+v", tc.name, got)
		}
	}
}

func TestPcapNGTwoInterfaces(t *testing.T) {
	v4 := ipv4("10.1.1.1", "10.1.1.2", 17, udp(1000, 53, "q"))
	v6 := ipv6("2001:db8::1", "2001:db8::2", 17, udp(1000, 53, "q"))
	for _, order := range []bo{binary.LittleEndian, binary.BigEndian} {
		b := &ng{order: order}
		b.shb().
			idb(uint16(LinkTypeEthernet), 0).                                                // default resolution: microseconds
			block(0x00000004, []byte{0, 0, 0, 0}).                                           // name resolution block: skipped
			idb(uint16(LinkTypeRaw), 1500, option{9, []byte{9}}, option{2, []byte("eth1")}). // nanoseconds
			epb(0, 1700000000_250000, ether(0x0800, v4)).
			block(0x0BAD0001, make([]byte, 24)). // unknown block type
			epb(1, 1700000001_000000123, v6).
			epb(0, 1700000002_000001, arp()).
			spb(uint32(len(v4)+14), ether(0x0800, v4)).
			block(0x00000005, make([]byte, 8)) // interface statistics block
		r, err := NewReader(bytes.NewReader(b.b))
		if err != nil {
			t.Fatalf("%v: %v", order, err)
		}
		if r.LinkType() != LinkTypeEthernet {
			t.Errorf("%v: LinkType = %d before the first Next, want 1", order, r.LinkType())
		}
		got := readAll(t, b.b)
		want := []Packet{
			{N: 1, Time: time.Unix(1700000000, 250000000), Data: v4, LinkType: LinkTypeEthernet, Interface: 0},
			{N: 2, Time: time.Unix(1700000001, 123), Data: v6, LinkType: LinkTypeRaw, Interface: 1},
			{N: 3, Time: time.Unix(1700000002, 1000), LinkType: LinkTypeEthernet, Skipped: "not IP: ethertype 0x0806"},
			{N: 4, Data: v4, LinkType: LinkTypeEthernet},
		}
		if len(got) != len(want) {
			t.Fatalf("%v: %d packets, want %d", order, len(got), len(want))
		}
		for i, w := range want {
			g := got[i]
			if g.N != w.N || !g.Time.Equal(w.Time) || !bytes.Equal(g.Data, w.Data) ||
				g.LinkType != w.LinkType || g.Interface != w.Interface || g.Skipped != w.Skipped {
				t.Errorf("%v: packet %d:\n got %+v\nwant %+v", order, i+1, g, w)
			}
		}
		if got[3].Time != (time.Time{}) || got[3].CapLen != len(v4)+14 {
			t.Errorf("%v: simple packet block: Time %v CapLen %d", order, got[3].Time, got[3].CapLen)
		}
	}
}

func TestPcapNGSectionsAndResolutions(t *testing.T) {
	v4 := ipv4("10.1.1.1", "10.1.1.2", 17, udp(1000, 53, "q"))
	le := &ng{order: binary.LittleEndian}
	le.shb().idb(uint16(LinkTypeRaw), 0, option{9, []byte{0x80 | 10}}, option{14, binary.LittleEndian.AppendUint64(nil, 100)}).
		epb(0, 5<<10|512, v4) // 5.5 s in units of 2^-10 s, plus a 100 s offset
	be := &ng{order: binary.BigEndian}
	be.shb().idb(uint16(LinkTypeIPv4), 0, option{9, []byte{3}}).
		epb(0, 7_001, v4) // milliseconds
	got := readAll(t, append(le.b, be.b...))
	if len(got) != 2 {
		t.Fatalf("%d packets, want 2", len(got))
	}
	if want := time.Unix(105, 500000000); !got[0].Time.Equal(want) || got[0].LinkType != LinkTypeRaw {
		t.Errorf("section 1: Time %v LinkType %d, want %v 101", got[0].Time, got[0].LinkType, want)
	}
	if want := time.Unix(7, 1000000); !got[1].Time.Equal(want) || got[1].LinkType != LinkTypeIPv4 || got[1].N != 2 {
		t.Errorf("section 2: N %d Time %v LinkType %d, want 2 %v 228", got[1].N, got[1].Time, got[1].LinkType, want)
	}
}

func TestIfaceTimeExtremes(t *testing.T) {
	for _, tc := range []struct {
		ifc  iface
		ts   uint64
		want time.Time
	}{
		{iface{exp: 0}, 42, time.Unix(42, 0)},
		{iface{exp: 19}, 3e18 + 15e9, time.Unix(0, 300000001)}, // units of 10^-19 s
		{iface{pow2: true, exp: 63}, 1<<63 - 1, time.Unix(0, 999999999)},
		{iface{pow2: true, exp: 1}, 3, time.Unix(1, 500000000)},
		{iface{exp: 6, offset: -10}, 11_000001, time.Unix(1, 1000)},
	} {
		got := tc.ifc.time(tc.ts)
		if !got.Equal(tc.want) {
			t.Errorf("%+v %d: got %v, want %v", tc.ifc, tc.ts, got, tc.want)
		}
	}
}

func TestNotCapture(t *testing.T) {
	for _, in := range []string{"", "abc", "hello world, not a capture", "\xd4\xc3\xb2"} {
		_, err := NewReader(strings.NewReader(in))
		if !errors.Is(err, ErrNotCapture) {
			t.Errorf("%q: err = %v, want ErrNotCapture", in, err)
		} else if !strings.Contains(err.Error(), "not a pcap or pcapng file") {
			t.Errorf("%q: message %q", in, err)
		}
	}
}

func TestCorruptFiles(t *testing.T) {
	v4 := ipv4("10.1.1.1", "10.1.1.2", 17, udp(1000, 53, "q"))
	good := classic(binary.LittleEndian, magicMicro, LinkTypeRaw, record{data: v4}, record{data: v4})
	rec2 := 24 + 16 + len(v4) // offset of the second record
	at2 := fmt.Sprintf("record 2 at byte offset %d", rec2)

	huge := append([]byte(nil), good...)
	binary.LittleEndian.PutUint32(huge[rec2+8:], MaxCapLen+1)

	badVersion := append([]byte(nil), good...)
	badVersion[4] = 9

	ngFile := func(f func(b *ng)) []byte {
		b := &ng{order: binary.LittleEndian}
		b.shb().idb(uint16(LinkTypeRaw), 0)
		f(b)
		return b.b
	}
	ngGood := ngFile(func(b *ng) { b.epb(0, 0, v4).epb(0, 0, v4) })
	ngRec2 := 28 + 20 + 32 + (len(v4)+3)&^3
	ngAt2 := fmt.Sprintf("record 2 at byte offset %d", ngRec2)
	ngTrailer := append([]byte(nil), ngGood...)
	ngTrailer[ngRec2-4] ^= 0xff // first EPB's trailing length
	ngOdd := append([]byte(nil), ngGood...)
	binary.LittleEndian.PutUint32(ngOdd[ngRec2+4:], 70)
	ngHuge := append([]byte(nil), ngGood...)
	binary.LittleEndian.PutUint32(ngHuge[ngRec2+4:], 1<<30)
	ngOverrun := append([]byte(nil), ngGood...)
	binary.LittleEndian.PutUint32(ngOverrun[ngRec2+20:], 4000) // caplen

	for _, tc := range []struct {
		name     string
		file     []byte
		atHeader bool   // NewReader fails
		is       error  // wrapped error
		msg      string // part of the message
		okBefore int    // packets read before the error
	}{
		{"truncated header", good[:20], true, io.ErrUnexpectedEOF, "file header", 0},
		{"bad version", badVersion, true, ErrCorrupt, "version 9.4", 0},
		{"truncated record header", good[:rec2+5], false, io.ErrUnexpectedEOF, at2, 1},
		{"truncated data", good[:len(good)-1], false, io.ErrUnexpectedEOF, at2, 1},
		{"huge caplen", huge, false, ErrCorrupt, at2 + ": captured length 262145 exceeds", 1},
		{"ng truncated shb", ngGood[:20], true, io.ErrUnexpectedEOF, "section header", 0},
		{"ng trailer mismatch", ngTrailer, false, ErrCorrupt, "trailing length", 0},
		{"ng odd length", ngOdd, false, ErrCorrupt, ngAt2 + ": block type 0x6: length 70", 1},
		{"ng huge block", ngHuge, false, ErrCorrupt, ngAt2 + ": block type 0x6: length 1073741824 exceeds", 1},
		{"ng caplen overrun", ngOverrun, false, ErrCorrupt, ngAt2 + ": captured length 4000 overruns", 1},
		{"ng truncated", ngGood[:len(ngGood)-2], false, io.ErrUnexpectedEOF, ngAt2, 1},
		{"ng unknown interface", ngFile(func(b *ng) { b.epb(3, 0, v4) }), false, ErrCorrupt, "interface 3 not described", 0},
		{"ng spb without idb", (&ng{order: binary.BigEndian}).shb().spb(4, v4).b, false, ErrCorrupt, "before any interface", 0},
		{"ng bad tsresol", ngFile(func(b *ng) { b.idb(1, 0, option{9, []byte{20}}).epb(1, 0, v4) }), false, ErrCorrupt, "resolution", 0},
		{"ng option overrun", ngFile(func(b *ng) {
			b.block(blockIDB, []byte{1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 200, 0})
		}), false, ErrCorrupt, "overruns", 0},
		{"ng version", ngFile(func(b *ng) {
			b.block(blockSHB, []byte{0x4d, 0x3c, 0x2b, 0x1a, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
		}), false, ErrCorrupt, "pcapng version 2.0", 0},
		{"ng bad byte order", ngFile(func(b *ng) {
			b.block(blockSHB, []byte{1, 2, 3, 4, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
		}), false, ErrCorrupt, "byte-order magic", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewReader(bytes.NewReader(tc.file))
			n := 0
			for err == nil {
				var p Packet
				p, err = r.Next()
				if err == nil {
					n++
					if p.N != n {
						t.Errorf("packet N = %d, want %d", p.N, n)
					}
				}
			}
			if tc.atHeader != (r == nil) {
				t.Errorf("NewReader failed: %v, want %v (err %v)", r == nil, tc.atHeader, err)
			}
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %v, want %v containing %q", err, tc.is, tc.msg)
			}
			if n != tc.okBefore {
				t.Errorf("%d packets before the error, want %d", n, tc.okBefore)
			}
		})
	}
}

func TestDataReusesBuffer(t *testing.T) {
	v4 := ipv4("10.1.1.1", "10.1.1.2", 17, udp(1000, 53, "q"))
	var recs []record
	for range 100 {
		recs = append(recs, record{data: v4})
	}
	file := classic(binary.LittleEndian, magicMicro, LinkTypeRaw, recs...)
	r, err := NewReader(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(1, func() {
		for {
			if _, err := r.Next(); err != nil {
				break
			}
		}
	})
	// One allocation for the buffer on the first packet, none after.
	if allocs > 2 {
		t.Errorf("%v allocations reading 100 packets, want at most 2", allocs)
	}
}

func BenchmarkReader(b *testing.B) {
	v4 := ipv4("10.1.1.1", "10.1.1.2", 6, make([]byte, 1000))
	var recs []record
	for range 1000 {
		recs = append(recs, record{data: ether(0x0800, v4)})
	}
	file := classic(binary.LittleEndian, magicMicro, LinkTypeEthernet, recs...)
	b.ReportAllocs()
	b.SetBytes(int64(len(file)))
	b.ResetTimer()
	for b.Loop() {
		r, err := NewReader(bytes.NewReader(file))
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := r.Next(); err != nil {
				break
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/packet")
}

func TestPcapNGObsoletePacketBlockAndTrailer(t *testing.T) {
	v6 := ipv6("2001:db8::1", "2001:db8::2", 17, udp(1000, 53, "q"))
	frame := append(ether(0x86dd, v6), 0xde, 0xad, 0xbe, 0xef) // FCS trailer
	b := &ng{order: binary.BigEndian}
	b.shb().idb(uint16(LinkTypeEthernet), 0)
	var body []byte
	body = binary.BigEndian.AppendUint16(body, 0) // interface
	body = binary.BigEndian.AppendUint16(body, 0) // drops
	body = binary.BigEndian.AppendUint32(body, 0)
	body = binary.BigEndian.AppendUint32(body, 2_000000)
	body = binary.BigEndian.AppendUint32(body, uint32(len(frame)))
	body = binary.BigEndian.AppendUint32(body, uint32(len(frame)))
	b.block(blockPB, append(body, frame...))
	got := readAll(t, b.b)
	if len(got) != 1 || !bytes.Equal(got[0].Data, v6) || !got[0].Time.Equal(time.Unix(2, 0)) || got[0].CapLen != len(frame) {
		t.Errorf("got %+v, want Data %x at 2s", got, v6)
	}
}

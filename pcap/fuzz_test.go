package pcap

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"
	"time"
)

// FuzzReader feeds arbitrary bytes to the reader: it must never panic,
// never loop, and hand out only consistent packets.
func FuzzReader(f *testing.F) {
	v4 := ipv4("10.1.1.1", "10.1.1.2", 17, udp(1000, 53, "q"))
	v6 := ipv6("2001:db8::1", "2001:db8::2", 17, udp(1000, 53, "q"))
	f.Add(classic(binary.LittleEndian, magicMicro, LinkTypeRaw, record{data: v4}, record{data: v6}))
	f.Add(classic(binary.BigEndian, magicNano, LinkTypeEthernet, record{data: ether(0x0800, v4, 0x8100)}, record{data: arp()}))
	f.Add(classic(binary.LittleEndian, magicMicro, LinkTypeLinuxSLL2, record{data: append(make([]byte, 20), v4...)}))
	f.Add(classic(binary.LittleEndian, magicMicro, LinkTypeNull, record{data: append([]byte{2, 0, 0, 0}, v4...)}))
	b := &ng{order: binary.LittleEndian}
	b.shb().idb(1, 0).idb(101, 1500, option{9, []byte{0x8a}}, option{14, make([]byte, 8)}).
		epb(0, 1, ether(0x86dd, v6)).block(0x77, []byte{1, 2, 3, 4}).epb(1, 2, v4).spb(60, arp())
	f.Add(b.b)
	b2 := &ng{order: binary.BigEndian}
	f.Add(b2.shb().idb(113, 0).epb(0, 1<<40, append(make([]byte, 14), 0x08, 0x00)).b)
	f.Add(AppendNGPacket(NGHeader(LinkTypeRaw, 65535), time.Unix(1, 2), v4, 0, "plugin=p verdict=drop"))
	f.Fuzz(func(t *testing.T, file []byte) {
		r, err := NewReader(bytes.NewReader(file))
		if err != nil {
			return
		}
		_ = r.LinkType()
		// Every record takes at least 12 bytes of input.
		for n := 1; n <= len(file)/12+1; n++ {
			p, err := r.Next()
			if err != nil {
				if err != io.EOF && err.Error() == "" {
					t.Fatal("empty error message")
				}
				return
			}
			if p.N != n {
				t.Fatalf("N = %d, want %d", p.N, n)
			}
			if (p.Data == nil) == (p.Skipped == "") {
				t.Fatalf("Data %x with Skipped %q", p.Data, p.Skipped)
			}
			if len(p.Data) > p.CapLen || p.CapLen > MaxCapLen {
				t.Fatalf("Data %d bytes, CapLen %d", len(p.Data), p.CapLen)
			}
		}
		t.Fatal("more records than the input can hold")
	})
}

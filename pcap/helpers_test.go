package pcap

import (
	"bytes"
	"encoding/binary"
	"io"
	"net/netip"
	"testing"
)

// Test fixtures are assembled byte by byte here, independently of Writer.

// ipv4 returns an IPv4 packet carrying payload as protocol proto.
func ipv4(src, dst string, proto uint8, payload []byte) []byte {
	p := make([]byte, 20, 20+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(20+len(payload)))
	p[8] = 64
	p[9] = proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(p[10:], ^uint16(sum))
	return append(p, payload...)
}

// ipv6 returns an IPv6 packet carrying payload with next header proto.
func ipv6(src, dst string, proto uint8, payload []byte) []byte {
	p := make([]byte, 40, 40+len(payload))
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:], uint16(len(payload)))
	p[6] = proto
	p[7] = 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(p[8:], s[:])
	copy(p[24:], d[:])
	return append(p, payload...)
}

// udp returns a UDP header and payload (checksum 0: none).
func udp(sport, dport uint16, payload string) []byte {
	u := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
	return append(u, payload...)
}

// ether returns an Ethernet frame; tags are VLAN TPIDs, each followed by
// a TCI, before the final EtherType.
func ether(etype uint16, payload []byte, tags ...uint16) []byte {
	f := []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1}
	for i, tpid := range tags {
		f = binary.BigEndian.AppendUint16(f, tpid)
		f = binary.BigEndian.AppendUint16(f, uint16(100+i)) // TCI: VLAN id
	}
	f = binary.BigEndian.AppendUint16(f, etype)
	return append(f, payload...)
}

// arp returns an ARP request frame.
func arp() []byte {
	body := []byte{0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2}
	return ether(0x0806, append(body, make([]byte, 18)...)) // padded to 60 bytes
}

// bo is a byte order that can also append.
type bo interface {
	binary.ByteOrder
	binary.AppendByteOrder
}

type record struct {
	sec, frac uint32
	data      []byte
	origLen   uint32 // 0: len(data)
}

// classic assembles a classic pcap file.
func classic(order bo, magic uint32, link uint32, recs ...record) []byte {
	var b []byte
	b = order.AppendUint32(b, magic)
	b = order.AppendUint16(b, 2)
	b = order.AppendUint16(b, 4)
	b = order.AppendUint32(b, 0) // thiszone
	b = order.AppendUint32(b, 0) // sigfigs
	b = order.AppendUint32(b, 65535)
	b = order.AppendUint32(b, link)
	for _, r := range recs {
		orig := r.origLen
		if orig == 0 {
			orig = uint32(len(r.data))
		}
		b = order.AppendUint32(b, r.sec)
		b = order.AppendUint32(b, r.frac)
		b = order.AppendUint32(b, uint32(len(r.data)))
		b = order.AppendUint32(b, orig)
		b = append(b, r.data...)
	}
	return b
}

// ng assembles a pcapng file block by block.
type ng struct {
	order bo
	b     []byte
}

func (n *ng) block(typ uint32, body []byte) *ng {
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	total := uint32(12 + len(body))
	n.b = n.order.AppendUint32(n.b, typ)
	n.b = n.order.AppendUint32(n.b, total)
	n.b = append(n.b, body...)
	n.b = n.order.AppendUint32(n.b, total)
	return n
}

func (n *ng) shb() *ng {
	var body []byte
	body = n.order.AppendUint32(body, magicNGBOM)
	body = n.order.AppendUint16(body, 1)
	body = n.order.AppendUint16(body, 0)
	body = n.order.AppendUint64(body, ^uint64(0)) // section length unknown
	return n.block(blockSHB, body)
}

// option is a pcapng option (code, value).
type option struct {
	code uint16
	val  []byte
}

func (n *ng) idb(link uint16, snap uint32, opts ...option) *ng {
	var body []byte
	body = n.order.AppendUint16(body, link)
	body = n.order.AppendUint16(body, 0)
	body = n.order.AppendUint32(body, snap)
	for _, o := range opts {
		body = n.order.AppendUint16(body, o.code)
		body = n.order.AppendUint16(body, uint16(len(o.val)))
		body = append(body, o.val...)
		for len(body)%4 != 0 {
			body = append(body, 0)
		}
	}
	if len(opts) > 0 {
		body = append(body, 0, 0, 0, 0) // opt_endofopt
	}
	return n.block(blockIDB, body)
}

func (n *ng) epb(ifid uint32, ts uint64, data []byte) *ng {
	var body []byte
	body = n.order.AppendUint32(body, ifid)
	body = n.order.AppendUint32(body, uint32(ts>>32))
	body = n.order.AppendUint32(body, uint32(ts))
	body = n.order.AppendUint32(body, uint32(len(data)))
	body = n.order.AppendUint32(body, uint32(len(data)))
	return n.block(blockEPB, append(body, data...))
}

func (n *ng) spb(origLen uint32, data []byte) *ng {
	return n.block(blockSPB, append(n.order.AppendUint32(nil, origLen), data...))
}

// readAll reads every packet of a capture, copying the data.
func readAll(t testing.TB, file []byte) []Packet {
	t.Helper()
	r, err := NewReader(bytes.NewReader(file))
	if err != nil {
		t.Fatalf("NewReader: %v", err)
	}
	var pkts []Packet
	for {
		p, err := r.Next()
		if err != nil {
			if err != io.EOF {
				t.Fatalf("Next after %d packets: %v", len(pkts), err)
			}
			return pkts
		}
		if p.Data != nil {
			p.Data = append([]byte(nil), p.Data...)
		}
		pkts = append(pkts, p)
	}
}

package queue

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"reflect"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// testPacket describes a packet message the tests synthesize the way the
// kernel builds it (NFQA_PACKET_HDR first), encoded with mdlayher/netlink so
// the hand-written parser is checked against an independent encoder.
type testPacket struct {
	queue   uint16
	id      uint32
	hook    uint8
	mark    uint32
	indev   uint32
	uid     uint32
	withUID bool
	ct      []byte
	ctinfo  uint32
	withCT  bool
	payload []byte
}

func testBE32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func (p testPacket) marshal(t testing.TB) []byte {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(attrPacketHdr, []byte{
		byte(p.id >> 24), byte(p.id >> 16), byte(p.id >> 8), byte(p.id),
		0x08, 0x00, p.hook, 0})
	if p.mark != 0 {
		ae.Bytes(attrMark, testBE32(p.mark))
	}
	if p.indev != 0 {
		ae.Bytes(attrInDev, testBE32(p.indev))
	}
	ae.Bytes(attrTimestampForTest, make([]byte, 16))
	if p.withUID {
		ae.Bytes(attrUID, testBE32(p.uid))
		ae.Bytes(attrGID, testBE32(p.uid+1))
	}
	if p.withCT {
		ae.Bytes(attrCT|unix.NLA_F_NESTED, p.ct)
		ae.Bytes(attrCTInfo, testBE32(p.ctinfo))
	}
	ae.Bytes(attrCapLen, testBE32(uint32(len(p.payload))))
	ae.Bytes(attrPayload, p.payload)
	attrs, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	data := append([]byte{unix.AF_INET, 0, byte(p.queue >> 8), byte(p.queue)}, attrs...)
	return nlMarshal(t, msgPacket, 0, data)
}

// nlMarshal encodes one netlink message with mdlayher/netlink.
func nlMarshal(t testing.TB, typ uint16, seq uint32, data []byte) []byte {
	t.Helper()
	b, err := netlink.Message{
		Header: netlink.Header{Length: uint32(16 + align(len(data))), Type: netlink.HeaderType(typ), Sequence: seq},
		Data:   data,
	}.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const attrTimestampForTest = 4 // NFQA_TIMESTAMP: ignored by the parser

func TestQueueParsePacket(t *testing.T) {
	payload := []byte{0x45, 0, 0, 28, 1, 2, 3} // odd length: exercises padding
	p := testPacket{queue: 7, id: 0xdeadbeef, hook: 2, mark: 0x42, indev: 3, uid: 1000, withUID: true,
		ct: []byte{8, 0, 1, 0, 1, 2, 3, 4}, ctinfo: 2, withCT: true, payload: payload}
	b := p.marshal(t)
	typ, msg, rest, err := nextMsg(b)
	if err != nil || typ != msgPacket || len(rest) != 0 {
		t.Fatalf("nextMsg: typ %#x rest %d err %v", typ, len(rest), err)
	}
	var m Msg
	if err := parsePacket(msg, &m); err != nil {
		t.Fatal(err)
	}
	want := Msg{Queue: 7, ID: 0xdeadbeef, HWProto: 0x0800, Hook: 2, Mark: 0x42, InDev: 3,
		UID: 1000, GID: 1001, HasUID: true, CTInfo: 2, HasCT: true, CapLen: uint32(len(payload))}
	got := m
	got.Payload, got.CT = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parsed\n%+v\nwant\n%+v", got, want)
	}
	if !bytes.Equal(m.Payload, payload) {
		t.Errorf("payload %x, want %x", m.Payload, payload)
	}
	if !bytes.Equal(m.CT, p.ct) {
		t.Errorf("ct %x, want %x", m.CT, p.ct)
	}
}

func TestQueueParseMultiMessageDatagram(t *testing.T) {
	var d []byte
	for i := uint32(1); i <= 3; i++ {
		d = append(d, testPacket{queue: 1, id: i, payload: bytes.Repeat([]byte{byte(i)}, int(i))}.marshal(t)...)
	}
	// An error reply for a verdict (ENOENT) in the same datagram.
	errMsg := nlMarshal(t, unix.NLMSG_ERROR, 99, append(binary.NativeEndian.AppendUint32(nil, negErrno(unix.ENOENT)), make([]byte, 16)...))
	binary.NativeEndian.PutUint32(errMsg[16+4+8:], 99)
	d = append(d, errMsg...)
	var ids []uint32
	var errs []unix.Errno
	for len(d) > 0 {
		typ, m, rest, err := nextMsg(d)
		if err != nil {
			t.Fatal(err)
		}
		d = rest
		switch typ {
		case msgPacket:
			var msg Msg
			if err := parsePacket(m, &msg); err != nil {
				t.Fatal(err)
			}
			if len(msg.Payload) != int(msg.ID) {
				t.Errorf("id %d: payload %d bytes", msg.ID, len(msg.Payload))
			}
			ids = append(ids, msg.ID)
		case unix.NLMSG_ERROR:
			e, seq, ok := errnoOf(m)
			if !ok || seq != 99 {
				t.Errorf("error message: ok %v seq %d", ok, seq)
			}
			errs = append(errs, e)
		}
	}
	if len(ids) != 3 || ids[0] != 1 || ids[2] != 3 {
		t.Errorf("ids %v, want [1 2 3]", ids)
	}
	if len(errs) != 1 || errs[0] != unix.ENOENT {
		t.Errorf("errors %v, want [ENOENT]", errs)
	}
}

func TestQueueParseTruncated(t *testing.T) {
	b := testPacket{queue: 9, id: 77, payload: make([]byte, 200)}.marshal(t)
	cut := b[:100]
	if _, _, _, err := nextMsg(cut); err == nil {
		t.Fatal("nextMsg accepted a message longer than the datagram")
	}
	q, id, ok := peekPacketID(cut)
	if !ok || q != 9 || id != 77 {
		t.Errorf("peekPacketID = %d %d %v, want 9 77 true", q, id, ok)
	}
	// A bad attribute length inside a complete message.
	bad := bytes.Clone(b)
	binary.NativeEndian.PutUint16(bad[20+12:], 0xfff0) // second attribute
	var m Msg
	if err := parsePacket(bad, &m); err == nil {
		t.Error("parsePacket accepted an attribute running past the message")
	}
	// No packet header at all.
	noHdr := nlMarshal(t, msgPacket, 0, []byte{0, 0, 0, 1})
	if err := parsePacket(noHdr, &m); err == nil {
		t.Error("parsePacket accepted a packet without NFQA_PACKET_HDR")
	}
}

func TestQueueAppendVerdict(t *testing.T) {
	vs := []struct {
		queue uint16
		id    uint32
		v     Verdict
	}{
		{1, 10, Verdict{Verdict: VerdictAccept}},
		{2, 11, Verdict{Verdict: VerdictDrop, Mark: 0x42, SetMark: true}},
		{3, 12, Verdict{Verdict: VerdictAccept, Payload: []byte{1, 2, 3, 4, 5}}},
		{4, 13, Verdict{Verdict: VerdictRepeat, Mark: 0x80000000, SetMark: true, Payload: []byte{9}}},
	}
	var b []byte
	for i, v := range vs {
		b = appendVerdict(b, v.queue, v.id, &v.v, uint32(100+i))
	}
	for i, v := range vs {
		var m netlink.Message
		if len(b) < 4 {
			t.Fatalf("verdict %d: buffer ended", i)
		}
		l := int(binary.NativeEndian.Uint32(b))
		if err := m.UnmarshalBinary(b[:l]); err != nil {
			t.Fatalf("verdict %d: %v", i, err)
		}
		b = b[align(l):]
		if m.Header.Type != msgVerdict || m.Header.Flags != netlink.Request || m.Header.Sequence != uint32(100+i) {
			t.Errorf("verdict %d: header %+v", i, m.Header)
		}
		if q := binary.BigEndian.Uint16(m.Data[2:]); q != v.queue {
			t.Errorf("verdict %d: res_id %d, want %d", i, q, v.queue)
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			t.Fatal(err)
		}
		var gotMark *uint32
		var gotPayload []byte
		for ad.Next() {
			switch ad.Type() {
			case attrVerdictHdr:
				d := ad.Bytes()
				if binary.BigEndian.Uint32(d) != v.v.Verdict || binary.BigEndian.Uint32(d[4:]) != v.id {
					t.Errorf("verdict %d: header %x", i, d)
				}
			case attrMark:
				mk := binary.BigEndian.Uint32(ad.Bytes())
				gotMark = &mk
			case attrPayload:
				gotPayload = ad.Bytes()
			default:
				t.Errorf("verdict %d: unexpected attribute %d", i, ad.Type())
			}
		}
		if err := ad.Err(); err != nil {
			t.Fatal(err)
		}
		if v.v.SetMark != (gotMark != nil) || (gotMark != nil && *gotMark != v.v.Mark) {
			t.Errorf("verdict %d: mark present=%v %#x, want %#x present=%v", i, gotMark != nil, deref(gotMark), v.v.Mark, v.v.SetMark)
		}
		if !bytes.Equal(gotPayload, v.v.Payload) {
			t.Errorf("verdict %d: payload %x, want %x", i, gotPayload, v.v.Payload)
		}
	}
	if len(b) != 0 {
		t.Errorf("%d bytes left after the verdicts", len(b))
	}
}

func TestQueueConfigMsg(t *testing.T) {
	b := configMsg(5, 7, cmdAttr(cmdBind), paramsAttr(0xffff, 2))
	var m netlink.Message
	if err := m.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if m.Header.Type != msgConfig || m.Header.Flags != netlink.Request|netlink.Acknowledge || m.Header.Sequence != 7 {
		t.Errorf("header %+v", m.Header)
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		t.Fatal(err)
	}
	var got [][]byte
	for ad.Next() {
		got = append(got, ad.Bytes())
	}
	if len(got) != 2 || !bytes.Equal(got[0], []byte{cmdBind, 0, 0, 0}) || !bytes.Equal(got[1], []byte{0, 0, 0xff, 0xff, 2}) {
		t.Errorf("attributes %x", got)
	}
}

// BenchmarkQueueParseBurst parses a burst of 64 datagrams of 64-byte packets.
func BenchmarkQueueParseBurst(b *testing.B) {
	for _, size := range []int{64, 1500} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			const burst = 64
			dgrams := make([][]byte, burst)
			for i := range dgrams {
				dgrams[i] = testPacket{queue: 3, id: uint32(i + 1), mark: 1, indev: 2, payload: make([]byte, size)}.marshal(b)
			}
			msgs := make([]Msg, burst)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				for i, d := range dgrams {
					_, m, _, err := nextMsg(d)
					if err != nil {
						b.Fatal(err)
					}
					if err := parsePacket(m, &msgs[i]); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*burst), "ns/msg")
		})
	}
}

// negErrno is the error field of an NLMSG_ERROR reply for e.
func negErrno(e unix.Errno) uint32 {
	v := -int32(e)
	return uint32(v)
}

func deref(p *uint32) uint32 {
	if p == nil {
		return 0
	}
	return *p
}

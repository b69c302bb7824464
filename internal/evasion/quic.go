package evasion

import (
	"fmt"

	"github.com/luafw/luafw/host/packet"
	"github.com/luafw/luafw/host/quic"
)

// quicFlow builds the client datagrams of one QUIC connection.
type quicFlow struct {
	f       *flow
	v       uint32
	dcid    []byte
	pn      uint32
	msg     []byte   // the ClientHello handshake message (no record header)
	pending []byte   // coalesced packets not yet sent
	pendMsg [][2]int // and the message bytes they carry
}

// frag is a CRYPTO frame of message bytes [a, b) (or a fake payload).
type frag struct {
	a, b int
	fake []byte
}

// initial seals one Initial with the given frames (PING and PADDING
// between them, as Chromium sends); coalesce keeps it for the next send.
func (q *quicFlow) initial(frags []frag, coalesce bool, real bool) {
	var frames []byte
	for _, fr := range frags {
		data := fr.fake
		if data == nil {
			data = q.msg[fr.a:fr.b]
		}
		frames = append(frames, 0x01, 0x00, 0x00) // PING, PADDING
		frames = append(frames, quic.CryptoFrame(uint64(fr.a), data)...)
	}
	pkt, err := quic.Seal(q.v, q.dcid, []byte{0xaa, 0xbb}, q.pn, frames, 1200)
	if err != nil {
		panic(fmt.Sprintf("evasion: %s: %v", q.f.c.Name, err))
	}
	q.pn++
	q.pending = append(q.pending, pkt...)
	for _, fr := range frags {
		if real && fr.fake == nil {
			q.pendMsg = append(q.pendMsg, [2]int{fr.a, fr.b})
		}
	}
	if coalesce {
		return
	}
	ttl := uint8(0)
	if !real {
		ttl = 3
	}
	b, err := packet.Build(packet.Spec{Src: q.f.src, Dst: q.f.dst, Proto: packet.ProtoUDP, SrcPort: q.f.sport, DstPort: q.f.dport, TTL: ttl, Payload: q.pending})
	if err != nil {
		panic(err)
	}
	q.f.add(b, real, q.pendMsg...)
	q.pending, q.pendMsg = nil, nil
}

type quicTechnique struct {
	name string
	v    uint32
	run  func(q *quicFlow, n, mid int, decoy []byte)
}

func quicTechniques() []quicTechnique {
	whole := func(q *quicFlow, n, mid int, _ []byte) { q.initial([]frag{{0, n, nil}}, false, true) }
	return []quicTechnique{
		{"v1-one-initial", quic.V1, whole},
		{"v2-one-initial", quic.V2, whole},
		{"two-initials", quic.V1, func(q *quicFlow, n, mid int, _ []byte) {
			q.initial([]frag{{0, mid, nil}}, false, true)
			q.initial([]frag{{mid, n, nil}}, false, true)
		}},
		{"two-initials-reversed", quic.V2, func(q *quicFlow, n, mid int, _ []byte) {
			q.initial([]frag{{mid, n, nil}}, false, true)
			q.initial([]frag{{0, mid, nil}}, false, true)
		}},
		{"shuffled-crypto-frames", quic.V1, func(q *quicFlow, n, mid int, _ []byte) {
			q.initial([]frag{{mid, n, nil}, {20, mid, nil}, {0, 20, nil}}, false, true)
		}},
		{"two-initials-shuffled-frames", quic.V1, func(q *quicFlow, n, mid int, _ []byte) {
			q.initial([]frag{{mid + 10, n, nil}, {0, 10, nil}}, false, true)
			q.initial([]frag{{mid, mid + 10, nil}, {10, mid, nil}}, false, true)
		}},
		{"coalesced-initials", quic.V1, func(q *quicFlow, n, mid int, _ []byte) {
			q.initial([]frag{{mid, n, nil}}, true, true)
			q.initial([]frag{{0, mid, nil}}, false, true)
		}},
		{"fake-initial-low-ttl", quic.V1, func(q *quicFlow, n, mid int, decoy []byte) {
			q.initial([]frag{{0, len(decoy), decoy}}, false, false)
			q.initial([]frag{{0, n, nil}}, false, true)
		}},
		{"retransmitted-after-drop", quic.V2, func(q *quicFlow, n, mid int, _ []byte) {
			for range 3 {
				q.initial([]frag{{0, n, nil}}, false, true)
			}
		}},
	}
}

// QUICCases returns the QUIC cases, each with the blocked name and with the
// allowed one. Ports start at port.
func QUICCases(port uint16) []Case {
	var out []Case
	for _, tech := range quicTechniques() {
		for _, blocked := range []bool{true, false} {
			name := Allowed
			if blocked {
				name = Blocked
			}
			c := Case{Name: "quic/" + tech.name, Blocked: blocked, Handled: true, Transport: "udp"}
			msg := hello(name, false)[5:]
			f := &flow{c: &c, src: client4, dst: server4, sport: port, dport: 443, msg: msg}
			q := &quicFlow{f: f, v: tech.v, dcid: []byte{byte(port >> 8), byte(port), 1, 2, 3, 4, 5, 6}, msg: msg}
			port++
			mid := nameAt(msg, name) + 6
			tech.run(q, len(msg), mid, hello(Decoy, false)[5:])
			c.MsgLen = len(msg)
			out = append(out, c)
		}
	}
	return out
}

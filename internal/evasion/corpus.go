// Package evasion generates luafw's evasion corpus: client flows that hide
// a TLS ClientHello's server name, or a DNS query's name, from a middlebox
// the way DPI-evasion tools do (zapret/nfqws, GoodbyeDPI, byedpi) and the
// way ordinary clients sometimes do by accident (a large hello in two
// segments, a retransmission, a slow link). Each technique comes twice: with
// the name to block, and with an allowed name as the control.
//
// Every packet is annotated with what the server makes of it: whether it
// reaches the server (a fake with a low TTL, a bad checksum or a wrong
// sequence number does not count) and which bytes of the message it
// delivers. A filter has been evaded when every byte of the message reached
// the server in packets it accepted. The corpus is deterministic: the same
// packets, in the same order, with the same timestamps, on every run.
package evasion

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/luafw/luafw/host/packet"
	"github.com/luafw/luafw/host/tlshello"
)

// Names the corpus uses.
const (
	Blocked = "www.blocked.example"
	Allowed = "www.allowed.example"
	Decoy   = "www.decoyed.example" // the fakes' name, as long as the others
)

// Packet is one packet of a case.
type Packet struct {
	Data []byte
	At   time.Duration // after the corpus's start
	// Real reports that the packet reaches the server and counts there.
	Real bool
	// Msg are the ranges of the message's bytes the packet delivers to
	// the server (when Real).
	Msg [][2]int
}

// Case is one flow (or a few, for reused addresses).
type Case struct {
	Name      string // technique, e.g. "disorder"
	Blocked   bool   // carries the name to block (else it is the control)
	MsgLen    int    // the message's length: bytes the server must get
	Handled   bool   // luafw is meant to catch it (false: a known gap)
	Packets   []Packet
	Transport string // "tcp" or "udp"
}

// Label is the case's name with its role.
func (c *Case) Label() string {
	if c.Blocked {
		return c.Name + "/blocked"
	}
	return c.Name + "/control"
}

// flow builds the packets of one TCP connection.
type flow struct {
	c        *Case
	src, dst netip.Addr
	sport    uint16
	dport    uint16
	isn      uint32
	at       time.Duration
	msg      []byte
}

var (
	client4 = netip.MustParseAddr("192.0.2.10")
	server4 = netip.MustParseAddr("198.51.100.80")
	client6 = netip.MustParseAddr("2001:db8::10")
	server6 = netip.MustParseAddr("2001:db8::80")
)

// tick is the time between packets of a flow.
const tick = 10 * time.Millisecond

func (f *flow) build(s packet.Spec) []byte {
	s.Src, s.Dst, s.Proto, s.SrcPort, s.DstPort = f.src, f.dst, packet.ProtoTCP, f.sport, f.dport
	s.Ack = 7000
	b, err := packet.Build(s)
	if err != nil {
		panic(fmt.Sprintf("evasion: %s: %v", f.c.Name, err))
	}
	return b
}

func (f *flow) add(b []byte, real bool, msg ...[2]int) {
	f.at += tick
	f.c.Packets = append(f.c.Packets, Packet{Data: b, At: f.at, Real: real, Msg: msg})
}

func (f *flow) syn() { f.synData(nil, false) }

// synData sends the SYN, with a payload the server ignores (tfo false) or
// reads (TCP Fast Open).
func (f *flow) synData(data []byte, tfo bool) {
	var msg [2]int
	if tfo {
		msg = [2]int{0, len(data)}
	}
	f.add(f.build(packet.Spec{TCPFlags: packet.TCPSyn, Seq: f.isn, Payload: data}), true, msg)
}

// seg sends message bytes [a, b) at their place in the stream.
func (f *flow) seg(a, b int) { f.segOpt(a, b, segOpts{}) }

type segOpts struct {
	payload  []byte // instead of the message's bytes (a fake)
	ttl      uint8
	badSum   bool
	seqDelta int // added to the sequence number
	fake     bool
}

func (f *flow) segOpt(a, b int, o segOpts) {
	data := o.payload
	if data == nil {
		data = f.msg[a:b]
	}
	p := f.build(packet.Spec{TCPFlags: packet.TCPPsh | packet.TCPAck, Seq: f.isn + 1 + uint32(a) + uint32(int32(o.seqDelta)), TTL: o.ttl, Payload: data})
	if o.badSum {
		var pp packet.Parsed
		pp.Decode(p)
		p[pp.L4Off+16] ^= 0x5a
	}
	real := !o.fake && !o.badSum && o.ttl == 0 && o.seqDelta == 0
	var msg [2]int
	if real {
		msg = [2]int{a, b}
	}
	f.add(p, real, msg)
}

// fake sends a decoy at the place of message bytes [a, b) that never
// reaches the server (a low TTL).
func (f *flow) fake(a, b int, payload []byte) {
	f.segOpt(a, b, segOpts{payload: payload, ttl: 3, fake: true})
}

// urgentSeg sends message bytes [a, b) with one urgent byte appended, the
// urgent pointer pointing past it: the server, without SO_OOBINLINE, takes
// the byte out of the stream. Later bytes are sent one place further on.
func (f *flow) urgentSeg(a, b int) {
	data := append(append([]byte(nil), f.msg[a:b]...), 'X')
	p := f.build(packet.Spec{TCPFlags: packet.TCPPsh | packet.TCPAck | packet.TCPUrg, Seq: f.isn + 1 + uint32(a), Payload: data})
	var pp packet.Parsed
	pp.Decode(p)
	binary.BigEndian.PutUint16(p[pp.L4Off+18:], uint16(len(data)))
	packet.FixChecksums(&pp, p)
	f.add(p, true, [2]int{a, b})
}

// afterUrgent sends message bytes [a, b) shifted by the urgent byte.
func (f *flow) afterUrgent(a, b int) {
	p := f.build(packet.Spec{TCPFlags: packet.TCPPsh | packet.TCPAck, Seq: f.isn + 2 + uint32(a), Payload: f.msg[a:b]})
	f.add(p, true, [2]int{a, b})
}

func (f *flow) rst(at int) {
	f.add(f.build(packet.Spec{TCPFlags: packet.TCPRst | packet.TCPAck, Seq: f.isn + 1 + uint32(at)}), false, [2]int{})
}

// hello returns a ClientHello record for name; big ones (1.8 KB, as
// post-quantum key shares make them) put the name late.
func hello(name string, big bool) []byte {
	s := tlshello.Spec{SNI: name, ALPN: []string{"h2", "http/1.1"}, TLS13: true, GREASE: true}
	if big {
		s.Padding, s.PadFirst = 1600, true
	}
	return tlshello.Build(s)
}

// nameAt returns where name starts in b; where record headers cut through
// it, a place in the middle of b.
func nameAt(b []byte, name string) int {
	for i := 0; i+len(name) <= len(b); i++ {
		if string(b[i:i+len(name)]) == name {
			return i
		}
	}
	return len(b)/2 - 6
}

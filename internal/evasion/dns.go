package evasion

import (
	"encoding/binary"
	"strings"
)

// dnsQuery returns a DNS query for name (type A, class IN) with a 2-byte
// length before it, as DNS over TCP sends it.
func dnsQuery(id uint16, name string) []byte {
	m := binary.BigEndian.AppendUint16(nil, id)
	m = append(m, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0) // RD, one question
	for _, l := range strings.Split(name, ".") {
		m = append(m, byte(len(l)))
		m = append(m, l...)
	}
	m = append(m, 0, 0, 1, 0, 1)
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(m))), m...)
}

// dnsTechnique sends a DNS-over-TCP stream (f.msg) the way a tool would.
type dnsTechnique struct {
	name string
	msg  func(name string) []byte
	run  func(f *flow, n, mid int)
}

func dnsTechniques() []dnsTechnique {
	one := func(name string) []byte { return dnsQuery(1, name) }
	pipelined := func(name string) []byte { return append(dnsQuery(1, "www.example.org"), dnsQuery(2, name)...) }
	return []dnsTechnique{
		{"one-segment", one, func(f *flow, n, mid int) { f.syn(); f.seg(0, n) }},
		{"length-alone", one, func(f *flow, n, mid int) { f.syn(); f.seg(0, 2); f.seg(2, n) }},
		{"split-mid-header", one, func(f *flow, n, mid int) { f.syn(); f.seg(0, 7); f.seg(7, n) }},
		{"split-mid-name", one, func(f *flow, n, mid int) { f.syn(); f.seg(0, mid); f.seg(mid, n) }},
		{"disorder", one, func(f *flow, n, mid int) { f.syn(); f.seg(mid, n); f.seg(0, mid) }},
		{"fake-low-ttl", one, func(f *flow, n, mid int) {
			f.syn()
			f.fake(0, n, dnsQuery(1, Decoy))
			f.seg(0, n)
		}},
		{"oob-urgent-byte", one, func(f *flow, n, mid int) { f.syn(); f.urgentSeg(0, mid); f.afterUrgent(mid, n) }},
		{"retransmitted-after-drop", one, func(f *flow, n, mid int) { f.syn(); f.seg(0, n); f.seg(0, n); f.seg(0, n) }},
		{"pipelined-one-segment", pipelined, func(f *flow, n, mid int) { f.syn(); f.seg(0, n) }},
		{"pipelined-split-anywhere", pipelined, func(f *flow, n, mid int) {
			f.syn()
			f.seg(0, 3)
			f.seg(3, mid)
			f.seg(mid, n)
		}},
		{"second-query-later", pipelined, func(f *flow, n, mid int) {
			first := len(dnsQuery(1, "www.example.org"))
			f.syn()
			f.seg(0, first)
			f.seg(first, n)
		}},
	}
}

// DNSCases returns the DNS-over-TCP cases, each with the blocked name and
// with the allowed one. Ports start at port.
func DNSCases(port uint16) []Case {
	var out []Case
	for _, tech := range dnsTechniques() {
		for _, blocked := range []bool{true, false} {
			name := Allowed
			if blocked {
				name = Blocked
			}
			c := Case{Name: "dns-tcp/" + tech.name, Blocked: blocked, Handled: true, Transport: "tcp"}
			msg := tech.msg(name)
			f := &flow{c: &c, src: client4, dst: server4, sport: port, dport: 53, isn: uint32(port) * 7919, msg: msg}
			port++
			mid := len(msg) - len(name) // inside the (last) name
			tech.run(f, len(msg), mid)
			c.MsgLen = len(msg)
			out = append(out, c)
		}
	}
	return out
}

package evasion

import (
	"time"

	"github.com/luafw/luafw/host/packet"
	"github.com/luafw/luafw/host/tlshello"
)

// tlsTechnique sends one ClientHello (f.msg) the way a tool would.
type tlsTechnique struct {
	name    string
	handled bool
	big     bool                      // a 1.8 KB hello, the name late
	msg     func(hello []byte) []byte // refragments the hello's records; nil keeps one
	ipv6    bool
	run     func(f *flow, t *tlsCtx)
}

// tlsCtx is what a technique knows of its hello.
type tlsCtx struct {
	n          int    // message length
	name, end  int    // where the name starts and ends
	mid        int    // a cut inside the name
	decoy      []byte // a hello for Decoy, as long as the real one
	decoyNamed func(name string) []byte
}

// Decoys of the real names' length, so that fakes line up with the real
// hello byte for byte.
var decoys = []string{Decoy, "www.decoyaa.example", "www.decoybb.example", "www.decoycc.example"}

func tlsTechniques() []tlsTechnique {
	return []tlsTechnique{
		{name: "plain", handled: true, run: func(f *flow, t *tlsCtx) { f.syn(); f.seg(0, t.n) }},
		{name: "split-after-1-byte", handled: true, run: func(f *flow, t *tlsCtx) { f.syn(); f.seg(0, 1); f.seg(1, t.n) }},
		{name: "split-record-header", handled: true, run: func(f *flow, t *tlsCtx) { f.syn(); f.seg(0, 5); f.seg(5, t.n) }},
		{name: "split-mid-name", handled: true, run: func(f *flow, t *tlsCtx) { f.syn(); f.seg(0, t.mid); f.seg(t.mid, t.n) }},
		{name: "split-every-8-bytes", handled: true, run: func(f *flow, t *tlsCtx) {
			f.syn()
			for a := 0; a < t.n; a += 8 {
				f.seg(a, min(a+8, t.n))
			}
		}},
		{name: "disorder", handled: true, run: func(f *flow, t *tlsCtx) { f.syn(); f.seg(t.mid, t.n); f.seg(0, t.mid) }},
		{name: "multidisorder", handled: true, run: func(f *flow, t *tlsCtx) {
			f.syn()
			cuts := []int{0, 2, t.name + 2, t.mid, t.n}
			for i := len(cuts) - 2; i >= 0; i-- {
				f.seg(cuts[i], cuts[i+1])
			}
		}},
		{name: "seqovl", handled: true, run: func(f *flow, t *tlsCtx) { f.syn(); f.seqovl(0, t.mid, 10); f.seg(t.mid, t.n) }},
		{name: "seqovl-disorder", handled: true, run: func(f *flow, t *tlsCtx) { f.syn(); f.seg(t.mid, t.n); f.seqovl(0, t.mid, 10) }},
		{name: "oob-urgent-byte", handled: true, run: func(f *flow, t *tlsCtx) { f.syn(); f.urgentSeg(0, t.mid); f.afterUrgent(t.mid, t.n) }},
		{name: "fake-bad-checksum", handled: true, run: func(f *flow, t *tlsCtx) {
			f.syn()
			f.segOpt(0, t.n, segOpts{payload: t.decoy, badSum: true})
			f.seg(0, t.n)
		}},
		{name: "fake-low-ttl", handled: true, run: func(f *flow, t *tlsCtx) { f.syn(); f.fake(0, t.n, t.decoy); f.seg(0, t.n) }},
		{name: "fake-wrong-seq", handled: true, run: func(f *flow, t *tlsCtx) {
			f.syn()
			f.segOpt(0, t.n, segOpts{payload: t.decoy, seqDelta: -10000})
			f.seg(0, t.n)
		}},
		{name: "fake-low-ttl-other-length", handled: true, run: func(f *flow, t *tlsCtx) {
			f.syn()
			d := t.decoyNamed("www.short.example")
			f.fake(0, len(d), d)
			f.seg(0, t.n)
		}},
		{name: "fake-after-real", handled: true, run: func(f *flow, t *tlsCtx) { f.syn(); f.seg(0, t.n); f.fake(0, t.n, t.decoy) }},
		{name: "fakes-three-names", handled: true, run: func(f *flow, t *tlsCtx) {
			f.syn()
			for _, d := range decoys[1:] {
				f.fake(0, t.n, t.decoyNamed(d))
			}
			f.seg(0, t.n)
		}},
		{name: "fakedsplit-zero-fakes", handled: true, run: func(f *flow, t *tlsCtx) {
			f.syn()
			z1, z2 := make([]byte, t.mid), make([]byte, t.n-t.mid)
			f.fake(0, t.mid, z1)
			f.seg(0, t.mid)
			f.fake(0, t.mid, z1)
			f.fake(t.mid, t.n, z2)
			f.seg(t.mid, t.n)
			f.fake(t.mid, t.n, z2)
		}},
		{name: "hostfakesplit", handled: true, run: func(f *flow, t *tlsCtx) {
			f.syn()
			f.seg(0, t.name)
			f.fake(t.name, t.end, t.decoy[t.name:t.end])
			f.seg(t.name, t.end)
			f.fake(t.name, t.end, t.decoy[t.name:t.end])
			f.seg(t.end, t.n)
		}},
		{name: "fake-prefix-inside-split", handled: true, run: func(f *flow, t *tlsCtx) {
			f.syn()
			f.fake(t.mid-4, t.mid+4, []byte("XXXXXXXX"))
			f.seg(0, t.n)
		}},
		{name: "zero-fake-first-then-disorder", handled: true, run: func(f *flow, t *tlsCtx) {
			f.syn()
			f.fake(0, 10, make([]byte, 10))
			f.seg(t.mid, t.n)
			f.seg(0, t.mid)
		}},
		{name: "fake-hello-first-then-disorder", handled: true, run: func(f *flow, t *tlsCtx) {
			f.syn()
			f.fake(0, t.n, t.decoy)
			f.seg(t.mid, t.n)
			f.seg(0, t.mid)
		}},
		{name: "syn-data-fake", handled: true, run: func(f *flow, t *tlsCtx) { f.synData(t.decoy, false); f.seg(0, t.n) }},
		{name: "tcp-fast-open", handled: true, run: func(f *flow, t *tlsCtx) { f.synData(f.msg, true) }},
		{name: "reused-tuple-after-rst", handled: true, run: func(f *flow, t *tlsCtx) {
			f.syn()
			f.segOpt(0, 60, segOpts{payload: t.decoy[:60], fake: true})
			f.rst(60)
			f.isn += 100000
			f.syn()
			f.seg(0, t.n)
		}},
		{name: "reused-tuple-no-rst", handled: true, run: func(f *flow, t *tlsCtx) {
			f.syn()
			f.segOpt(0, t.n, segOpts{payload: t.decoy, fake: true}) // an earlier connection's hello
			f.isn += 100000
			f.syn()
			f.seg(0, t.n)
		}},
		{name: "tls-records-one-segment", handled: true, msg: func(h []byte) []byte { return tlshello.Fragment(h, 50, tlshello.MaxMessage) },
			run: func(f *flow, t *tlsCtx) { f.syn(); f.seg(0, t.n) }},
		{name: "tls-records-across-segments", handled: true, msg: func(h []byte) []byte { return tlshello.Fragment(h, 50, tlshello.MaxMessage) },
			run: func(f *flow, t *tlsCtx) { f.syn(); f.seg(0, 55); f.seg(55, t.n) }},
		{name: "tls-records-many-disorder", handled: true, msg: func(h []byte) []byte { return tlshello.Fragment(h, 16) },
			run: func(f *flow, t *tlsCtx) { f.syn(); f.seg(t.mid, t.n); f.seg(60, t.mid); f.seg(0, 60) }},
		{name: "big-hello-name-in-second-segment", handled: true, big: true,
			run: func(f *flow, t *tlsCtx) { f.syn(); f.seg(0, 1400); f.seg(1400, t.n) }},
		{name: "big-hello-retransmitted-after-drop", handled: true, big: true,
			run: func(f *flow, t *tlsCtx) {
				f.syn()
				f.seg(0, 1400)
				f.seg(1400, t.n)
				f.seg(1400, t.n)
				f.seg(1400, t.n)
			}},
		{name: "retransmitted-after-drop", handled: true, run: func(f *flow, t *tlsCtx) { f.syn(); f.seg(0, t.n); f.seg(0, t.n); f.seg(0, t.n) }},
		{name: "segments-8s-apart", handled: true, run: func(f *flow, t *tlsCtx) {
			f.syn()
			f.seg(0, t.mid)
			f.at += 8 * time.Second
			f.seg(t.mid, t.n)
		}},
		{name: "segments-25s-apart", handled: true, run: func(f *flow, t *tlsCtx) {
			f.syn()
			f.seg(0, t.mid)
			f.at += 25 * time.Second
			f.seg(t.mid, t.n)
		}},
		{name: "ipv6-disorder", handled: true, ipv6: true, run: func(f *flow, t *tlsCtx) { f.syn(); f.seg(t.mid, t.n); f.seg(0, t.mid) }},
		{name: "no-syn-seen-split", handled: true, run: func(f *flow, t *tlsCtx) { f.seg(0, t.mid); f.seg(t.mid, t.n) }},
		{name: "no-syn-seen-disorder", handled: true, run: func(f *flow, t *tlsCtx) { f.seg(t.mid, t.n); f.seg(0, t.mid) }},
		{name: "combo-records-fakes-disorder", handled: true, msg: func(h []byte) []byte { return tlshello.Fragment(h, 40, tlshello.MaxMessage) },
			run: func(f *flow, t *tlsCtx) {
				f.syn()
				f.fake(0, t.n, t.decoy)
				f.seg(t.mid, t.n)
				f.fake(t.mid, t.n, t.decoy[t.mid:])
				f.seg(0, t.mid)
			}},
	}
}

// seqovl sends message bytes [a, b) with k junk bytes before them, the
// sequence number moved back by k: the junk overlaps bytes the server has
// (the SYN's place, or an earlier segment) and is trimmed.
func (f *flow) seqovl(a, b, k int) {
	data := append(make([]byte, k), f.msg[a:b]...)
	for i := range k {
		data[i] = 'J'
	}
	p := f.build(packet.Spec{TCPFlags: packet.TCPPsh | packet.TCPAck, Seq: f.isn + 1 + uint32(a) - uint32(k), Payload: data})
	f.add(p, true, [2]int{a, b})
}

// TLSCases returns the TLS cases: each technique with the blocked name and
// with the allowed one. Ports start at port (one per flow).
func TLSCases(port uint16) []Case {
	var out []Case
	for _, tech := range tlsTechniques() {
		for _, blocked := range []bool{true, false} {
			name := Allowed
			if blocked {
				name = Blocked
			}
			c := Case{Name: "tls/" + tech.name, Blocked: blocked, Handled: tech.handled, Transport: "tcp"}
			msg := hello(name, tech.big)
			decoyNamed := func(n string) []byte { return hello(n, tech.big) }
			if tech.msg != nil {
				msg = tech.msg(msg)
				inner := decoyNamed
				decoyNamed = func(n string) []byte { return tech.msg(inner(n)) }
			}
			f := &flow{c: &c, src: client4, dst: server4, sport: port, dport: 443, isn: uint32(port) * 7919, msg: msg}
			if tech.ipv6 {
				f.src, f.dst = client6, server6
			}
			port++
			t := &tlsCtx{n: len(msg), name: nameAt(msg, name), decoy: decoyNamed(Decoy), decoyNamed: decoyNamed}
			t.end = t.name + len(name)
			t.mid = t.name + 6
			tech.run(f, t)
			c.MsgLen = len(msg)
			out = append(out, c)
		}
	}
	return out
}

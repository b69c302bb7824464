package queue

import (
	"context"
	"encoding/binary"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// These tests run Serve against a SOCK_SEQPACKET socketpair standing in for
// the kernel: the test writes synthesized packet datagrams into one end and
// reads the verdict datagrams back. They need no privileges.

type pair struct {
	s    *Socket
	peer int
}

func newQPair(t testing.TB, cfg Config) *pair {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		t.Fatal(err)
	}
	// The peer blocks, but never for longer than 5 s.
	tv := unix.Timeval{Sec: 5}
	if err := unix.SetsockoptTimeval(fds[1], unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	}
	if cfg.Queues == nil {
		cfg.Queues = []uint16{1}
	}
	s, err := newSocket(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.attachFD(fds[0]); err != nil {
		t.Fatal(err)
	}
	s.allocHotPath()
	t.Cleanup(func() {
		s.file.Close()
		unix.Close(fds[1])
	})
	return &pair{s: s, peer: fds[1]}
}

func (p *pair) write(t testing.TB, d []byte) {
	t.Helper()
	if _, err := unix.Write(p.peer, d); err != nil {
		t.Fatalf("writing a datagram to the socket: %v", err)
	}
}

type gotVerdict struct {
	queue   uint16
	id      uint32
	verdict uint32
	mark    uint32
	hasMark bool
	payload []byte
}

// readVerdicts reads one datagram of verdicts from the peer.
func (p *pair) readVerdicts(t testing.TB) []gotVerdict {
	t.Helper()
	buf := make([]byte, 1<<20)
	n, err := unix.Read(p.peer, buf)
	if err != nil {
		t.Fatalf("reading verdicts: %v", err)
	}
	var out []gotVerdict
	for d := buf[:n]; len(d) > 0; {
		typ, m, rest, err := nextMsg(d)
		if err != nil {
			t.Fatalf("verdict datagram: %v", err)
		}
		d = rest
		if typ != msgVerdict {
			t.Fatalf("message type %#x in the verdict datagram", typ)
		}
		g := gotVerdict{queue: binary.BigEndian.Uint16(m[18:])}
		for a := m[20:]; len(a) >= 4; {
			l := int(binary.NativeEndian.Uint16(a))
			v := a[4:l]
			switch binary.NativeEndian.Uint16(a[2:]) {
			case attrVerdictHdr:
				g.verdict, g.id = binary.BigEndian.Uint32(v), binary.BigEndian.Uint32(v[4:])
			case attrMark:
				g.mark, g.hasMark = binary.BigEndian.Uint32(v), true
			case attrPayload:
				g.payload = append([]byte(nil), v...)
			}
			a = a[min(align(l), len(a)):]
		}
		out = append(out, g)
	}
	return out
}

// serve runs Serve in the background; the returned function cancels it and
// returns Serve's result.
func (p *pair) serve(t testing.TB, h func([]Msg, []Verdict)) (stop func() error) {
	return p.serveThen(t, h, nil)
}

// serveThen is serve with ServeThen's sent.
func (p *pair) serveThen(t testing.TB, h func([]Msg, []Verdict), sent func()) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.s.ServeThen(ctx, h, sent) }()
	return func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return after its context was cancelled")
			return nil
		}
	}
}

func TestQueueServeBurstAndVerdicts(t *testing.T) {
	p := newQPair(t, Config{Queues: []uint16{4, 5}})
	// Datagram 1: two packets and an error reply (a refused earlier verdict).
	d1 := append(testPacket{queue: 4, id: 1, payload: []byte{1}}.marshal(t),
		testPacket{queue: 5, id: 2, payload: []byte{2, 2}}.marshal(t)...)
	d1 = append(d1, nlMarshal(t, unix.NLMSG_ERROR, 9, append(binary.NativeEndian.AppendUint32(nil, negErrno(unix.ENOENT)), make([]byte, 16)...))...)
	p.write(t, d1)
	p.write(t, testPacket{queue: 4, id: 3, payload: []byte{3, 3, 3}}.marshal(t))
	p.write(t, testPacket{queue: 5, id: 4, payload: []byte{4, 4, 4, 4}}.marshal(t))

	var calls, seen int
	stop := p.serve(t, func(msgs []Msg, out []Verdict) {
		calls++
		for i, m := range msgs {
			seen++
			if len(m.Payload) != int(m.ID) {
				t.Errorf("id %d: payload %d bytes", m.ID, len(m.Payload))
			}
			if m.ID%2 == 0 {
				out[i] = Verdict{Verdict: VerdictAccept, Mark: 0x42, SetMark: true}
			} // odd: left zero = drop
		}
	})
	got := p.readVerdicts(t) // all four verdicts arrive in ONE datagram
	if err := stop(); err != nil {
		t.Fatalf("Serve returned %v after cancel, want nil", err)
	}
	want := []gotVerdict{
		{queue: 4, id: 1, verdict: VerdictDrop},
		{queue: 5, id: 2, verdict: VerdictAccept, mark: 0x42, hasMark: true},
		{queue: 4, id: 3, verdict: VerdictDrop},
		{queue: 5, id: 4, verdict: VerdictAccept, mark: 0x42, hasMark: true},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d verdicts in the first datagram %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i].queue != want[i].queue || got[i].id != want[i].id || got[i].verdict != want[i].verdict ||
			got[i].mark != want[i].mark || got[i].hasMark != want[i].hasMark {
			t.Errorf("verdict %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if calls != 1 || seen != 4 {
		t.Errorf("handler called %d times with %d packets, want once with 4", calls, seen)
	}
	st := p.s.Stats()
	if st.Received != 4 || st.Bursts != 1 || st.MaxBurst != 4 || st.VerdictsSent != 4 || st.KernelErrors != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestQueueServeTruncatedAndBadVerdicts(t *testing.T) {
	p := newQPair(t, Config{CopyRange: 64}) // slot of 64+4096 bytes
	p.write(t, testPacket{queue: 1, id: 10, payload: make([]byte, 6000)}.marshal(t))
	var handled []uint32
	stop := p.serve(t, func(msgs []Msg, out []Verdict) {
		for i, m := range msgs {
			handled = append(handled, m.ID)
			out[i] = Verdict{Verdict: 2} // NF_STOLEN: refused by the kernel, must become a drop
		}
	})
	got := p.readVerdicts(t)
	if len(got) != 1 || got[0].id != 10 || got[0].verdict != VerdictDrop {
		t.Errorf("truncated packet: verdicts %+v, want a drop for id 10", got)
	}
	p.write(t, testPacket{queue: 1, id: 11, payload: []byte{1}}.marshal(t))
	got = p.readVerdicts(t)
	if len(got) != 1 || got[0].id != 11 || got[0].verdict != VerdictDrop {
		t.Errorf("invalid verdict: verdicts %+v, want a drop for id 11", got)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if len(handled) != 1 || handled[0] != 11 {
		t.Errorf("handler saw ids %v, want [11] (the truncated packet is answered without it)", handled)
	}
	st := p.s.Stats()
	if st.Truncated != 1 || st.ParseErrors != 1 || st.BadVerdicts != 1 || st.VerdictsSent != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestQueueServeAlteredPayloadAndChunking(t *testing.T) {
	p := newQPair(t, Config{Burst: 8})
	// 8 packets whose altered payloads (60 KB each) exceed one send chunk:
	// the verdicts go out in more than one sendmsg, none is lost.
	for i := uint32(1); i <= 8; i++ {
		p.write(t, testPacket{queue: 1, id: i, payload: []byte{byte(i)}}.marshal(t))
	}
	alt := make([]byte, 60000)
	alt[0] = 0x45
	stop := p.serve(t, func(msgs []Msg, out []Verdict) {
		for i := range msgs {
			out[i] = Verdict{Verdict: VerdictAccept, Payload: alt}
		}
	})
	var got []gotVerdict
	for len(got) < 8 {
		got = append(got, p.readVerdicts(t)...)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for i, g := range got {
		if g.id != uint32(i+1) || g.verdict != VerdictAccept || len(g.payload) != len(alt) || g.payload[0] != 0x45 {
			t.Errorf("verdict %d: id %d verdict %d payload %d bytes", i, g.id, g.verdict, len(g.payload))
		}
	}
	if st := p.s.Stats(); st.VerdictsSent != 8 || st.SendErrors != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestQueueServeHandlerPanic(t *testing.T) {
	p := newQPair(t, Config{FailOpen: true})
	p.write(t, testPacket{queue: 1, id: 1, payload: []byte{1}}.marshal(t))
	calls := 0
	var sent atomic.Int32 // ServeThen's sent: not after the burst that panicked
	stop := p.serveThen(t, func(msgs []Msg, out []Verdict) {
		calls++
		if calls == 1 {
			panic("script bug")
		}
		for i := range out {
			out[i].Verdict = VerdictRepeat
		}
	}, func() { sent.Add(1) })
	got := p.readVerdicts(t)
	if len(got) != 1 || got[0].id != 1 || got[0].verdict != VerdictAccept {
		t.Errorf("after a panic with FailOpen: verdicts %+v, want accept for id 1", got)
	}
	p.write(t, testPacket{queue: 1, id: 2, payload: []byte{1, 2}}.marshal(t))
	got = p.readVerdicts(t)
	if len(got) != 1 || got[0].id != 2 || got[0].verdict != VerdictRepeat {
		t.Errorf("the burst after the panic: verdicts %+v, want repeat for id 2", got)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if st := p.s.Stats(); st.Panics != 1 || st.VerdictsSent != 2 {
		t.Errorf("stats %+v", st)
	}
	if n := sent.Load(); n != 1 {
		t.Errorf("sent ran %d times, want once: after the second burst, not after the one that panicked", n)
	}
}

func TestQueueServeSecondServeRefused(t *testing.T) {
	p := newQPair(t, Config{})
	started := make(chan struct{})
	p.write(t, testPacket{queue: 1, id: 1, payload: []byte{1}}.marshal(t))
	stop := p.serve(t, func(msgs []Msg, out []Verdict) {
		select {
		case <-started:
		default:
			close(started)
		}
	})
	<-started
	if err := p.s.Serve(context.Background(), func([]Msg, []Verdict) {}); err == nil {
		t.Error("a second concurrent Serve on the same socket was accepted")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestQueueProcessAllocs(t *testing.T) {
	p := newQPair(t, Config{Queues: []uint16{1}})
	dgrams := make([][]byte, 64)
	for i := range dgrams {
		dgrams[i] = testPacket{queue: 1, id: uint32(i + 1), mark: 7, payload: make([]byte, 64)}.marshal(t)
	}
	h := func(msgs []Msg, out []Verdict) {
		for i := range msgs {
			out[i] = Verdict{Verdict: VerdictAccept, Mark: 1, SetMark: true}
		}
	}
	buf := make([]byte, 1<<16)
	allocs := testing.AllocsPerRun(100, func() {
		p.s.process(dgrams, h)
		if _, err := unix.Read(p.peer, buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("process allocates %.1f times per burst of 64, want 0", allocs)
	}
}

func TestQueueOpenValidates(t *testing.T) {
	for _, cfg := range []Config{{}, {Queues: []uint16{3, 3}}} {
		if _, err := Open(cfg); err == nil {
			t.Errorf("Open(%+v) succeeded", cfg)
		}
	}
}

// BenchmarkQueueBurst measures a whole burst without the kernel: parsing 64
// datagrams, an accept-all handler, building the 64 verdicts and sending
// them in one sendmsg over a socketpair.
func BenchmarkQueueBurst(b *testing.B) {
	p := newQPair(b, Config{Queues: []uint16{1}})
	dgrams := make([][]byte, 64)
	for i := range dgrams {
		dgrams[i] = testPacket{queue: 1, id: uint32(i + 1), payload: make([]byte, 64)}.marshal(b)
	}
	h := func(msgs []Msg, out []Verdict) {
		for i := range msgs {
			out[i].Verdict = VerdictAccept
		}
	}
	buf := make([]byte, 1<<16)
	b.ReportAllocs()
	for b.Loop() {
		p.s.process(dgrams, h)
		if _, err := unix.Read(p.peer, buf); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(dgrams)), "ns/pkt")
}

// fakeKernel answers config requests on the peer end: reply returns the
// errno for each request (0 = ack) and may write extra datagrams first.
func (p *pair) fakeKernel(t *testing.T, requests int, reply func(i int, req []byte) unix.Errno) chan [][]byte {
	reqs := make(chan [][]byte, 1)
	go func() {
		var got [][]byte
		buf := make([]byte, 1<<16)
		for i := 0; i < requests; i++ {
			n, err := unix.Read(p.peer, buf)
			if err != nil {
				t.Errorf("fake kernel: %v", err)
				break
			}
			req := append([]byte(nil), buf[:n]...)
			got = append(got, req)
			e := reply(i, req)
			ack := append(binary.NativeEndian.AppendUint32(nil, negErrno(e)), req[:16]...)
			if _, err := unix.Write(p.peer, nlMarshal(t, unix.NLMSG_ERROR, 0, ack)); err != nil {
				t.Errorf("fake kernel: %v", err)
			}
		}
		reqs <- got
	}()
	return reqs
}

// cfgFlagsOf returns NFQA_CFG_FLAGS of a config request.
func cfgFlagsOf(req []byte) (flags uint32, ok bool) {
	for a := req[20:]; len(a) >= 4; {
		l := int(binary.NativeEndian.Uint16(a))
		if binary.NativeEndian.Uint16(a[2:]) == cfgFlags {
			return binary.BigEndian.Uint32(a[4:]), true
		}
		a = a[min(align(l), len(a)):]
	}
	return 0, false
}

// TestQueueBindConnTrackRefused: the kernel refuses the conntrack flag
// (EOPNOTSUPP, before binding anything); the socket binds without it and
// says so. A packet of the first queue that arrives while the second is
// being bound is kept and served.
func TestQueueBindConnTrackRefused(t *testing.T) {
	p := newQPair(t, Config{Queues: []uint16{1, 2}, ConnTrack: true, GSO: true})
	reqs := p.fakeKernel(t, 3, func(i int, req []byte) unix.Errno {
		flags, _ := cfgFlagsOf(req)
		if flags&uint32(1<<1) != 0 { // NFQA_CFG_F_CONNTRACK
			return unix.EOPNOTSUPP
		}
		if i == 2 { // queue 1 is live: a packet arrives before the ack for queue 2
			p.write(t, testPacket{queue: 1, id: 5, payload: []byte{1}}.marshal(t))
		}
		return 0
	})
	if err := p.s.bindAll(); err != nil {
		t.Fatal(err)
	}
	got := <-reqs
	if len(got) != 3 {
		t.Fatalf("%d config requests, want 3 (refused, queue 1, queue 2)", len(got))
	}
	for i, req := range got {
		flags, ok := cfgFlagsOf(req)
		wantCT := i == 0
		if !ok || (flags&2 != 0) != wantCT || flags&4 == 0 {
			t.Errorf("request %d: flags %#x (present %v), want GSO and conntrack=%v", i, flags, ok, wantCT)
		}
		if q := binary.BigEndian.Uint16(req[18:]); q != uint16(max(i, 1)) {
			t.Errorf("request %d for queue %d", i, q)
		}
	}
	info := p.s.Info()
	if info.ConnTrack || !info.ConnTrackRefused || info.Flags != 4 {
		t.Errorf("info %+v, want conntrack refused and flags GSO only", info)
	}
	if len(p.s.pending) != 1 {
		t.Fatalf("%d datagrams kept while configuring, want 1", len(p.s.pending))
	}
	stop := p.serve(t, func(msgs []Msg, out []Verdict) {
		for i := range out {
			out[i].Verdict = VerdictAccept
		}
	})
	v := p.readVerdicts(t)
	if len(v) != 1 || v[0].id != 5 || v[0].verdict != VerdictAccept {
		t.Errorf("verdicts for the packet kept while configuring: %+v", v)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

package queue

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/luafw/luafw/netfilter"

	"golang.org/x/sys/unix"

	"github.com/luafw/luafw/tests/lab"
)

// End-to-end tests on a lab (client -> router -> server namespaces): the
// router diverts forwarded UDP to NFQUEUE and the socket under test, opened
// inside the router, answers. They skip unless root. Nothing here touches
// the machine's own namespace: rules go through the lab's guarded Shell,
// sockets are opened inside NS.Do, and all addresses are the lab's.

// labSink receives datagrams inside the server and records the sequence
// number (the first 4 payload bytes) of each.
type labSink struct {
	pc   net.PacketConn
	mu   sync.Mutex
	seqs map[uint32]int
	n    atomic.Int64
	done chan struct{}
}

func newLabSink(t *testing.T, ns *lab.NS, port uint16) *labSink {
	t.Helper()
	pc, err := ns.ListenPacket("udp4", fmt.Sprintf(":%d", port))
	if err != nil {
		t.Fatal(err)
	}
	_ = pc.(*net.UDPConn).SetReadBuffer(4 << 20)
	s := &labSink{pc: pc, seqs: map[uint32]int{}, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		buf := make([]byte, 2048)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n >= 4 {
				s.mu.Lock()
				s.seqs[binary.BigEndian.Uint32(buf)]++
				s.mu.Unlock()
			}
			s.n.Add(1)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-s.done })
	return s
}

func (s *labSink) snapshot() map[uint32]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[uint32]int, len(s.seqs))
	for k, v := range s.seqs {
		m[k] = v
	}
	return m
}

// labSend sends count datagrams from the client to the server's port, each
// carrying its sequence number first + seqBase, paced so that no queue on the path
// overflows.
func labSend(ctx context.Context, l *lab.Lab, port uint16, seqBase, count int) error {
	c, err := l.Client.Dial(ctx, "udp4", netip.AddrPortFrom(l.Server.Addr4, port).String())
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 32)
	for i := 0; i < count; i++ {
		binary.BigEndian.PutUint32(buf, uint32(seqBase+i))
		if _, err := c.Write(buf); err != nil {
			return fmt.Errorf("sending datagram %d: %w", i, err)
		}
		if i%50 == 49 {
			time.Sleep(time.Millisecond)
		}
	}
	return nil
}

// udpOf returns the destination port and the 4-byte sequence number of an
// IPv4 UDP packet.
func udpOf(p []byte) (dport uint16, seq uint32, ok bool) {
	if len(p) < 20 || p[0]>>4 != 4 || p[9] != 17 {
		return 0, 0, false
	}
	ihl := int(p[0]&0xf) * 4
	if len(p) < ihl+8+4 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint16(p[ihl+2:]), binary.BigEndian.Uint32(p[ihl+8:]), true
}

func labRules(t *testing.T, ctx context.Context, l *lab.Lab, script string) {
	t.Helper()
	if _, err := l.Router.Shell(ctx, script); err != nil {
		t.Fatalf("router rules: %v", err)
	}
}

func openIn(t *testing.T, ns *lab.NS, cfg Config) *Socket {
	t.Helper()
	var s *Socket
	if err := ns.Do(func() (err error) { s, err = Open(cfg); return err }); err != nil {
		t.Fatalf("Open in %s: %v", ns, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// serve runs s.Serve in the background and returns a function that cancels
// it and reports what Serve returned.
func serve(t *testing.T, s *Socket, h func([]Msg, []Verdict)) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, h) }()
	t.Cleanup(cancel)
	return func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("Serve did not return within 10 s of its context being cancelled")
		}
	}
}

func waitFor(ctx context.Context, what string, cond func() bool) error {
	for !cond() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// TestQueueLabVerdictsAndMark: two queues on one socket; even ids are
// accepted with mark 0x42, odd ones dropped. The server must receive exactly
// the accepted datagrams, and a later mangle/POSTROUTING rule must count
// exactly the accepted ones as marked.
func TestQueueLabVerdictsAndMark(t *testing.T) {
	l := lab.New(t, lab.Options{NoIPv6: true})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const portA, portB, n = 5001, 5002, 1000
	labRules(t, ctx, l, `
iptables -A FORWARD -p udp --dport 5001 -j NFQUEUE --queue-num 10 --queue-bypass
iptables -A FORWARD -p udp --dport 5002 -j NFQUEUE --queue-num 11 --queue-bypass
iptables -t mangle -A POSTROUTING -p udp -m mark --mark 0x42
`)
	sinkA, sinkB := newLabSink(t, l.Server, portA), newLabSink(t, l.Server, portB)
	s := openIn(t, l.Router, Config{Queues: []uint16{10, 11}})

	var mu sync.Mutex
	accepted := map[uint16]map[uint32]bool{portA: {}, portB: {}}
	var seen atomic.Int64
	var wrongQueue atomic.Int64
	stop := serve(t, s, func(msgs []Msg, out []Verdict) {
		mu.Lock()
		defer mu.Unlock()
		for i, m := range msgs {
			dport, seq, ok := udpOf(m.Payload)
			if !ok {
				out[i].Verdict = VerdictDrop
				continue
			}
			if (dport == portA) != (m.Queue == 10) {
				wrongQueue.Add(1)
			}
			if m.ID%2 == 0 {
				out[i] = Verdict{Verdict: VerdictAccept, Mark: 0x42, SetMark: true}
				accepted[dport][seq] = true
			}
			seen.Add(1)
		}
	})

	errc := make(chan error, 2)
	go func() { errc <- labSend(ctx, l, portA, 0, n/2) }()
	go func() { errc <- labSend(ctx, l, portB, 100000, n/2) }()
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if err := waitFor(ctx, "the handler to see all datagrams", func() bool { return seen.Load() == n }); err != nil {
		t.Fatalf("%v (saw %d of %d; stats %+v)", err, seen.Load(), n, s.Stats())
	}
	if err := waitFor(ctx, "every verdict to be sent", func() bool { return s.Stats().VerdictsSent == n }); err != nil {
		t.Fatalf("%v (stats %+v)", err, s.Stats())
	}
	mu.Lock()
	wantA, wantB := len(accepted[portA]), len(accepted[portB])
	mu.Unlock()
	if wantA != n/4 || wantB != n/4 {
		t.Errorf("accepted %d and %d (even ids of each queue), want %d each", wantA, wantB, n/4)
	}
	if err := waitFor(ctx, "the server to receive the accepted datagrams", func() bool {
		return sinkA.n.Load() >= int64(wantA) && sinkB.n.Load() >= int64(wantB)
	}); err != nil {
		t.Fatalf("%v: got %d and %d", err, sinkA.n.Load(), sinkB.n.Load())
	}
	if err := stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for port, sink := range map[uint16]*labSink{portA: sinkA, portB: sinkB} {
		got := sink.snapshot()
		if len(got) != len(accepted[port]) {
			t.Errorf("port %d: server received %d distinct datagrams, %d were accepted", port, len(got), len(accepted[port]))
		}
		bad := 0
		for seq, c := range got {
			if !accepted[port][seq] || c != 1 {
				if bad++; bad <= 5 {
					t.Errorf("port %d: datagram %d received %d times, accepted=%v", port, seq, c, accepted[port][seq])
				}
			}
		}
		if bad > 5 {
			t.Errorf("port %d: %d more wrong datagrams", port, bad-5)
		}
	}
	if wrongQueue.Load() != 0 {
		t.Errorf("%d packets reported the wrong queue number", wrongQueue.Load())
	}
	marked, _, err := l.Router.IptablesCounter(ctx, "mangle", "POSTROUTING", "--mark 0x42")
	if err != nil {
		t.Fatal(err)
	}
	if marked != uint64(wantA+wantB) {
		t.Errorf("mangle POSTROUTING counted %d packets with mark 0x42, want %d", marked, wantA+wantB)
	}
	st := s.Stats()
	if st.Received != n || st.VerdictsSent != n || st.SendErrors != 0 || st.KernelErrors != 0 || st.ParseErrors != 0 {
		t.Errorf("stats %+v", st)
	}
	t.Logf("stats %+v", st)
}

// TestQueueLabBurstAndCancel: while the handler holds the first burst, 300
// more packets wait in the socket; the next receive must take more than one.
// Then Serve must return nil once its context is cancelled.
func TestQueueLabBurstAndCancel(t *testing.T) {
	l := lab.New(t, lab.Options{NoIPv6: true})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 301
	labRules(t, ctx, l, `iptables -A FORWARD -p udp --dport 5003 -j NFQUEUE --queue-num 3 --queue-bypass`)
	sink := newLabSink(t, l.Server, 5003)
	s := openIn(t, l.Router, Config{Queues: []uint16{3}})
	entered, release := make(chan struct{}), make(chan struct{})
	var first sync.Once
	stop := serve(t, s, func(msgs []Msg, out []Verdict) {
		first.Do(func() { close(entered); <-release })
		for i := range out {
			out[i].Verdict = VerdictAccept
		}
	})
	if err := labSend(ctx, l, 5003, 0, 1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered:
	case <-ctx.Done():
		t.Fatal("the first packet never reached the handler")
	}
	if err := labSend(ctx, l, 5003, 1, n-1); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := sink.waitN(ctx, n); err != nil {
		t.Fatalf("%v (stats %+v)", err, s.Stats())
	}
	if err := stop(); err != nil {
		t.Fatalf("Serve after cancel: %v, want nil", err)
	}
	st := s.Stats()
	if st.MaxBurst <= 1 {
		t.Errorf("largest burst %d with %d packets waiting, want > 1 (stats %+v)", st.MaxBurst, n-1, st)
	}
	if st.Received != n || st.VerdictsSent != n {
		t.Errorf("stats %+v, want %d received and answered", st, n)
	}
	t.Logf("bursts %d for %d packets, largest %d", st.Bursts, st.Received, st.MaxBurst)
}

func (s *labSink) waitN(ctx context.Context, n int) error {
	return waitFor(ctx, fmt.Sprintf("%d datagrams at the server", n), func() bool { return s.n.Load() >= int64(n) })
}

// TestQueueLabBypassAndClose: with --queue-bypass and no socket bound,
// packets flow; with a socket that drops everything, none arrive; after
// Close (which unbinds) they flow again.
func TestQueueLabBypassAndClose(t *testing.T) {
	l := lab.New(t, lab.Options{NoIPv6: true})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	labRules(t, ctx, l, `iptables -A FORWARD -p udp --dport 5004 -j NFQUEUE --queue-num 4 --queue-bypass`)
	sink := newLabSink(t, l.Server, 5004)

	if err := labSend(ctx, l, 5004, 0, 100); err != nil {
		t.Fatal(err)
	}
	if err := sink.waitN(ctx, 100); err != nil {
		t.Fatalf("no socket bound, --queue-bypass: %v", err)
	}

	s := openIn(t, l.Router, Config{Queues: []uint16{4}})
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background(), func(msgs []Msg, out []Verdict) {}) }() // all dropped
	if err := labSend(ctx, l, 5004, 100, 50); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(ctx, "50 drop verdicts", func() bool { return s.Stats().VerdictsSent == 50 }); err != nil {
		t.Fatalf("%v (stats %+v)", err, s.Stats())
	}
	if got := sink.n.Load(); got != 100 {
		t.Errorf("server got %d datagrams after 50 were dropped, want 100", got)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve returned %v after Close, want nil", err)
		}
	case <-ctx.Done():
		t.Fatal("Serve did not return after Close")
	}
	if err := labSend(ctx, l, 5004, 200, 100); err != nil {
		t.Fatal(err)
	}
	if err := sink.waitN(ctx, 200); err != nil {
		t.Fatalf("after Close: %v", err)
	}
}

// TestQueueLabOpenRules: a queue bound by one socket cannot be bound by
// another; the conntrack flag is either granted or reported as refused
// (this kernel refuses it) and the socket works either way.
func TestQueueLabOpenRules(t *testing.T) {
	l := lab.New(t, lab.Options{NoIPv6: true})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	labRules(t, ctx, l, `iptables -A FORWARD -p udp --dport 5005 -j NFQUEUE --queue-num 5`)
	sink := newLabSink(t, l.Server, 5005)
	s := openIn(t, l.Router, Config{Queues: []uint16{5, 6}, ConnTrack: true, GSO: true, FailOpen: true})
	info := s.Info()
	if info.ConnTrack == info.ConnTrackRefused {
		t.Errorf("info %+v: exactly one of ConnTrack and ConnTrackRefused must be set", info)
	}
	t.Logf("info %+v", info)
	err := l.Router.Do(func() error {
		s2, err := Open(Config{Queues: []uint16{7, 6}})
		if err == nil {
			s2.Close()
			return errors.New("second socket bound queue 6")
		}
		t.Logf("second socket: %v", err)
		// Queue 7 must have been released again: a third socket can take it.
		s3, err := Open(Config{Queues: []uint16{7}})
		if err != nil {
			return fmt.Errorf("queue 7 left bound after a failed open: %w", err)
		}
		return s3.Close()
	})
	if err != nil {
		t.Error(err)
	}
	var hasCT atomic.Bool
	stop := serve(t, s, func(msgs []Msg, out []Verdict) {
		for i, m := range msgs {
			if m.HasCT {
				hasCT.Store(true)
			}
			out[i].Verdict = VerdictAccept
		}
	})
	if err := labSend(ctx, l, 5005, 0, 20); err != nil {
		t.Fatal(err)
	}
	if err := sink.waitN(ctx, 20); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if hasCT.Load() && !info.ConnTrack {
		t.Errorf("packets carried conntrack info although Info().ConnTrack is false")
	}
}

// TestQueueLabThroughput compares, on the lab router, the plain go-nfqueue
// consumer and the batched nfq.Socket (cmd/nfqbaseline as its own process,
// as `make bench` runs it) under a 64-byte UDP flood from the client. It
// only logs figures (no timing assertions) and runs only with
// LUAFW_NFQ_THROUGHPUT=1, as it takes about 20 s.
func TestQueueLabThroughput(t *testing.T) {
	if os.Getenv("LUAFW_NFQ_THROUGHPUT") == "" {
		t.Skip("set LUAFW_NFQ_THROUGHPUT=1 to measure plain vs batched throughput (about 20 s)")
	}
	l := lab.New(t, lab.Options{NoIPv6: true})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "nfqbaseline")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "../cmd/nfqbaseline").CombinedOutput(); err != nil {
		t.Fatalf("building nfqbaseline: %v\n%s", err, out)
	}
	sink, err := l.Server.ServeUDP(":6000")
	if err != nil {
		t.Fatal(err)
	}
	dst := netip.AddrPortFrom(l.Server.Addr4, 6000).String()
	senders := 1
	if v, err := strconv.Atoi(os.Getenv("LUAFW_NFQ_SENDERS")); err == nil && v > 0 {
		senders = v
	}
	flood := func() (sent int, secs float64) {
		fctx, fcancel := context.WithTimeout(ctx, 5*time.Second)
		defer fcancel()
		var wg sync.WaitGroup
		var total atomic.Int64
		start := time.Now()
		for range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n, err := udpFlood(fctx, l.Client, dst)
				if err != nil {
					t.Errorf("flood: %v", err)
				}
				total.Add(int64(n))
			}()
		}
		wg.Wait()
		return int(total.Load()), time.Since(start).Seconds()
	}

	before := sink.Count()
	sent, secs := flood()
	t.Logf("kernel alone: sent %.0f/s, delivered %.0f/s", float64(sent)/secs, float64(sink.Count()-before)/secs)

	labRules(t, ctx, l, `iptables -A FORWARD -p udp --dport 6000 -j NFQUEUE --queue-num 0`)
	for _, mode := range []string{"plain", "batched"} {
		args := []string{"-mode", mode, "-queue", "0", "-duration", "60s"}
		if dir := os.Getenv("LUAFW_NFQ_PROFILE_DIR"); dir != "" {
			args = append(args, "-cpuprofile", filepath.Join(dir, mode+".pprof"))
		}
		cmd, err := l.Router.Command(ctx, bin, args...)
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait until the queue is bound (the kernel lists it).
		if err := waitFor(ctx, "queue 0 to be bound", func() bool {
			s, err := l.Router.Run(ctx, "cat", "/proc/net/netfilter/nfnetlink_queue")
			return err == nil && strings.TrimSpace(s) != ""
		}); err != nil {
			t.Fatal(err)
		}
		before := sink.Count()
		sent, secs := flood()
		delivered := sink.Count() - before
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("%s: %v\n%s", mode, err, out.String())
		}
		var res struct {
			Packets  uint64 `json:"packets"`
			MaxBurst uint64 `json:"max_burst"`
			Bursts   uint64 `json:"bursts"`
			Errors   uint64 `json:"errors"`
		}
		if err := json.Unmarshal([]byte(out.String()), &res); err != nil {
			t.Fatalf("%s: output %q: %v", mode, out.String(), err)
		}
		cpu := (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
		t.Logf("%-7s: sent %.0f/s, answered %.0f/s, delivered %.0f/s; consumer CPU %.2f s = %.0f packets per CPU-second; %s",
			mode, float64(sent)/secs, float64(res.Packets)/secs, float64(delivered)/secs,
			cpu, float64(res.Packets)/cpu, strings.TrimSpace(out.String()))
	}
}

// udpFlood sends 64-byte UDP datagrams from ns to dst (a lab address) with
// sendmmsg, 64 per call, until ctx ends; it returns how many were sent.
func udpFlood(ctx context.Context, ns *lab.NS, dst string) (int, error) {
	c, err := ns.Dial(ctx, "udp4", dst)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	if err := c.SetWriteDeadline(deadline); err != nil {
		return 0, err
	}
	rc, err := c.(*net.UDPConn).SyscallConn()
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 64)
	iov := unix.Iovec{Base: &buf[0]}
	iov.SetLen(len(buf))
	hdrs := make([]mmsghdr, 64)
	for i := range hdrs {
		hdrs[i].hdr.Iov = &iov
		hdrs[i].hdr.SetIovlen(1)
	}
	sent := 0
	for ctx.Err() == nil {
		var n int
		err := rc.Write(func(fd uintptr) bool {
			r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)), 0, 0, 0)
			if e == unix.EAGAIN {
				return false
			}
			if e == 0 {
				n = int(r)
			}
			return true // other errors (an ICMP error reported back): go on
		})
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			return sent, err
		}
		sent += n
	}
	return sent, nil
}

// TestQueueLabUIDGID: with UIDGID, a locally generated packet (client
// OUTPUT) carries its socket's owner.
func TestQueueLabUIDGID(t *testing.T) {
	l := lab.New(t, lab.Options{NoIPv6: true})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := l.Client.Shell(ctx, `iptables -A OUTPUT -p udp --dport 5006 -j NFQUEUE --queue-num 8 --queue-bypass`); err != nil {
		t.Fatal(err)
	}
	sink := newLabSink(t, l.Server, 5006)
	s := openIn(t, l.Client, Config{Queues: []uint16{8}, UIDGID: true})
	var hasUID atomic.Bool
	var uid, gid atomic.Uint32
	var hooks atomic.Uint32
	stop := serve(t, s, func(msgs []Msg, out []Verdict) {
		for i, m := range msgs {
			hasUID.Store(m.HasUID)
			uid.Store(m.UID)
			gid.Store(m.GID)
			hooks.Store(uint32(m.Hook))
			out[i].Verdict = VerdictAccept
		}
	})
	if err := labSend(ctx, l, 5006, 0, 1); err != nil {
		t.Fatal(err)
	}
	if err := sink.waitN(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if !hasUID.Load() || uid.Load() != uint32(os.Getuid()) || gid.Load() != uint32(os.Getgid()) {
		t.Errorf("uid/gid %v %d/%d, want %d/%d", hasUID.Load(), uid.Load(), gid.Load(), os.Getuid(), os.Getgid())
	}
	if hooks.Load() != uint32(netfilter.Output) {
		t.Errorf("hook %d, want 3 (output)", hooks.Load())
	}
}

package lab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Blast describes a bounded UDP flood for [NS.UDPBlast]: as fast as the
// kernel takes datagrams (or paced to Rate), sendmmsg batches of Batch
// identical datagrams, until Max have been sent or Duration has passed.
type Blast struct {
	// Dst is the destination, "IP:port" with a literal IP that belongs to
	// the lab (an address of one of its interfaces' subnets) or loopback.
	Dst string
	// Sources are local addresses to send from, one batch each in turn
	// (empty: the kernel picks). Several sources spread one flood over
	// NFQUEUE's --queue-balance, which hashes addresses, not ports. Add
	// them to the namespace first (`ip addr add`).
	Sources []netip.Addr
	// SrcPort, when not 0, is the source port of every socket (one per
	// source address), so that the flood's flows are known in advance
	// (for example to answer them once, making them established for
	// conntrack); 0 gives each socket an ephemeral port.
	SrcPort uint16
	// Size is the UDP payload in bytes, 0-65507.
	Size int
	// Duration bounds how long the flood runs (required, > 0); ctx may end
	// it earlier.
	Duration time.Duration
	// Max bounds how many datagrams are sent (required, > 0).
	Max int
	// Rate, when > 0, paces the flood to that many datagrams per second on
	// average (in bursts of at most Batch); 0 sends as fast as possible.
	// With Batch 1 the datagrams are evenly spaced: the sender sleeps until
	// each one's deadline (start + i/Rate).
	Rate int
	// Burst, with Rate, sends only whole batches: it waits until Batch
	// datagrams are due and sends them in one call (bursts of Batch every
	// Batch/Rate seconds). Without it a paced flood sends whatever is due,
	// often a datagram or two per call.
	Burst bool
	// Batch is the number of datagrams per sendmmsg call: default 64, at
	// most 1024.
	Batch int
}

// BlastResult is what [NS.UDPBlast] did.
type BlastResult struct {
	// Sent is the number of datagrams the kernel accepted.
	Sent int
	// Elapsed is the time from the first send to the last.
	Elapsed time.Duration
	// SoftErrors counts sendmmsg calls that failed with an error a flood
	// expects and goes on after: ENOBUFS, or an ICMP error reported back
	// on the socket (ECONNREFUSED, EHOSTUNREACH, ENETUNREACH).
	SoftErrors int
	// Calls is the number of sendmmsg calls: Sent/Calls is the mean burst
	// (1 for evenly spaced datagrams).
	Calls int
	// MaxLate is, for a paced flood, the longest a send started after its
	// deadline (timer and scheduling delay); a late sender catches up, so
	// a large value means some datagrams went out closer together.
	MaxLate time.Duration
	// LateCalls counts, for a paced flood, the sends that started more
	// than half a period (the time between two sends on schedule) after
	// their deadline: how often the spacing was not what was asked.
	LateCalls int
}

// PPS is the send rate in datagrams per second.
func (r BlastResult) PPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Sent) / r.Elapsed.Seconds()
}

// maxBatch bounds Blast.Batch.
const maxBatch = 1024

// mmsghdr is the kernel's struct mmsghdr.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// UDPBlast sends a bounded UDP flood from inside the namespace (see
// [Blast]) and returns what it sent. It is a sender for throughput
// measurements: one goroutine, one sendmmsg system call per batch.
func (n *NS) UDPBlast(ctx context.Context, b Blast) (BlastResult, error) {
	if err := n.usable(); err != nil {
		return BlastResult{}, err
	}
	dst, err := n.lab.checkBlast(&b)
	if err != nil {
		return BlastResult{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, b.Duration)
	defer cancel()
	if err := ctx.Err(); err != nil {
		return BlastResult{}, err
	}

	sources := b.Sources
	if len(sources) == 0 {
		sources = []netip.Addr{{}}
	}
	var conns []*net.UDPConn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for _, src := range sources {
		c, err := n.blastConn(src, b.SrcPort, dst)
		if err != nil {
			return BlastResult{}, err
		}
		conns = append(conns, c)
	}
	raws := make([]rawSender, len(conns))
	deadline, _ := ctx.Deadline()
	for i, c := range conns {
		if err := c.SetWriteDeadline(deadline); err != nil {
			return BlastResult{}, fmt.Errorf("lab: [%s] UDP blast: %w", n.Name, err)
		}
		rc, err := c.SyscallConn()
		if err != nil {
			return BlastResult{}, fmt.Errorf("lab: [%s] UDP blast: %w", n.Name, err)
		}
		raws[i] = rawSender{rc: rc}
	}

	buf := make([]byte, max(b.Size, 1))
	iov := unix.Iovec{Base: &buf[0]}
	iov.SetLen(b.Size)
	hdrs := make([]mmsghdr, b.Batch)
	for i := range hdrs {
		hdrs[i].hdr.Iov = &iov
		hdrs[i].hdr.SetIovlen(1)
	}

	var res BlastResult
	start := time.Now()
	for batch := 0; res.Sent < b.Max && ctx.Err() == nil; batch++ {
		want := min(b.Batch, b.Max-res.Sent)
		if b.Rate > 0 {
			n, wait, late := paceStep(res.Sent, want, b.Rate, b.Burst, time.Since(start))
			if n == 0 {
				// Ahead of schedule: wait until the next send is due.
				sleepCtx(ctx, max(wait, 20*time.Microsecond))
				batch--
				continue
			}
			want = n
			res.MaxLate = max(res.MaxLate, late)
			if period := time.Duration(float64(want) / float64(b.Rate) * float64(time.Second)); late > period/2 {
				res.LateCalls++
			}
		}
		sent, soft, err := raws[batch%len(raws)].send(hdrs[:want])
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			res.Elapsed = time.Since(start)
			return res, fmt.Errorf("lab: [%s] UDP blast to %s after %d datagrams: %w", n.Name, b.Dst, res.Sent, err)
		}
		res.Sent += sent
		res.Calls++
		if soft {
			res.SoftErrors++
		}
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// paceStep is the schedule of a paced flood: datagram i (1-based) is due
// at i/rate seconds after the start. Given the datagrams sent so far, the
// next call's size bound (want >= 1) and the time since the start, it
// returns how many to send now; 0 means wait that long first. A burst
// sends want datagrams once the last of them is due; otherwise whatever is
// due goes (at most want). late is how long after its deadline the send's
// last datagram goes out.
func paceStep(sent, want, rate int, burst bool, elapsed time.Duration) (n int, wait, late time.Duration) {
	due := int(elapsed.Seconds() * float64(rate)) // datagrams due by now
	need := 1
	if burst {
		need = want
	}
	deadline := func(i int) time.Duration {
		return time.Duration(float64(i) / float64(rate) * float64(time.Second))
	}
	if due < sent+need {
		return 0, deadline(sent+need) - elapsed, 0
	}
	n = want
	if !burst {
		n = min(want, due-sent)
	}
	return n, 0, elapsed - deadline(sent+n)
}

// checkBlast validates and completes b; it returns the destination.
func (l *Lab) checkBlast(b *Blast) (netip.AddrPort, error) {
	if b.Max <= 0 {
		return netip.AddrPort{}, fmt.Errorf("lab: UDP blast needs a positive Max, got %d", b.Max)
	}
	if b.Duration <= 0 {
		return netip.AddrPort{}, fmt.Errorf("lab: UDP blast needs a positive Duration, got %v", b.Duration)
	}
	if b.Size < 0 || b.Size > 65507 {
		return netip.AddrPort{}, fmt.Errorf("lab: UDP payload size %d out of range 0-65507", b.Size)
	}
	if b.Rate < 0 {
		return netip.AddrPort{}, fmt.Errorf("lab: negative rate %d", b.Rate)
	}
	if b.Batch == 0 {
		b.Batch = 64
	}
	if b.Batch < 0 || b.Batch > maxBatch {
		return netip.AddrPort{}, fmt.Errorf("lab: batch %d out of range 1-%d", b.Batch, maxBatch)
	}
	if err := checkAddr(b.Dst, false); err != nil {
		return netip.AddrPort{}, err
	}
	dst, err := netip.ParseAddrPort(b.Dst)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("lab: address %q: %w", b.Dst, err)
	}
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	if !l.inLab(dst.Addr()) {
		return netip.AddrPort{}, fmt.Errorf("lab: UDP blast destination %s is neither loopback nor in the lab's subnets: refusing", dst.Addr())
	}
	for _, s := range b.Sources {
		if !s.IsValid() || s.Unmap().Is4() != dst.Addr().Is4() {
			return netip.AddrPort{}, fmt.Errorf("lab: UDP blast source %v: want an address of the destination's family", s)
		}
	}
	return dst, nil
}

// inLab reports whether a is loopback or inside one of the lab's interface
// subnets.
func (l *Lab) inLab(a netip.Addr) bool {
	if a.IsLoopback() {
		return true
	}
	for _, n := range []*NS{l.Client, l.Router, l.Server} {
		if n == nil {
			continue
		}
		for _, ifc := range n.Ifaces {
			if ifc.Addr4.IsValid() && ifc.Addr4.Masked().Contains(a) || ifc.Addr6.IsValid() && ifc.Addr6.Masked().Contains(a) {
				return true
			}
		}
	}
	return false
}

// blastConn opens a UDP socket inside the namespace, bound to src (any
// address when invalid) and port, and connected to dst with connect(2), so
// that sendmmsg needs no addresses.
func (n *NS) blastConn(src netip.Addr, port uint16, dst netip.AddrPort) (*net.UDPConn, error) {
	network, unspec := "udp4", netip.IPv4Unspecified()
	if dst.Addr().Is6() {
		network, unspec = "udp6", netip.IPv6Unspecified()
	}
	if !src.IsValid() {
		src = unspec
	}
	local := netip.AddrPortFrom(src.Unmap(), port).String()
	pc, err := n.ListenPacket(network, local)
	if err != nil {
		return nil, err
	}
	c := pc.(*net.UDPConn)
	var sa unix.Sockaddr = &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}
	if dst.Addr().Is6() {
		sa = &unix.SockaddrInet6{Port: int(dst.Port()), Addr: dst.Addr().As16()}
	}
	rc, err := c.SyscallConn()
	if err == nil {
		var cerr error
		err = rc.Control(func(fd uintptr) {
			cerr = unix.Connect(int(fd), sa)
			if cerr == nil {
				// A larger send buffer: fewer EAGAIN waits between batches.
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20)
			}
		})
		err = errors.Join(err, cerr)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("lab: [%s] UDP blast socket %s -> %s: %w", n.Name, local, dst, err)
	}
	return c, nil
}

// rawSender sends batches on one connected socket.
type rawSender struct{ rc syscall.RawConn }

// send sends one batch; soft tells that the call failed with an error the
// flood goes on after.
func (s rawSender) send(hdrs []mmsghdr) (sent int, soft bool, err error) {
	var serr error
	err = s.rc.Write(func(fd uintptr) bool {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)), 0, 0, 0)
		switch e {
		case 0:
			sent = int(r)
		case unix.EAGAIN:
			return false // wait until writable (or the deadline)
		case unix.EINTR:
		case unix.ENOBUFS, unix.ECONNREFUSED, unix.EHOSTUNREACH, unix.ENETUNREACH:
			soft = true
		default:
			serr = e
		}
		return true
	})
	if err == nil {
		err = serr
	}
	return sent, soft, err
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// UDPEcho is a UDP echo server inside a namespace: it sends every datagram
// back to its sender. It stops on Close and when the lab closes.
type UDPEcho struct {
	pc     *net.UDPConn
	echoed atomic.Int64
	done   chan struct{}
	once   sync.Once
}

// ServeUDPEcho starts a UDP echo server inside the namespace on addr
// ("IP:port" or ":port"; port 0 picks one, see Addr).
func (n *NS) ServeUDPEcho(addr string) (*UDPEcho, error) {
	pc, err := n.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	e := &UDPEcho{pc: pc.(*net.UDPConn), done: make(chan struct{})}
	if err := n.lab.track(e); err != nil {
		pc.Close()
		return nil, err
	}
	go e.serve()
	return e, nil
}

func (e *UDPEcho) serve() {
	defer close(e.done)
	buf := make([]byte, 65536)
	for {
		m, from, err := e.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			return // closed
		}
		if _, err := e.pc.WriteToUDPAddrPort(buf[:m], from); err == nil {
			e.echoed.Add(1)
		}
	}
}

// Addr is the address the server listens on.
func (e *UDPEcho) Addr() netip.AddrPort { return e.pc.LocalAddr().(*net.UDPAddr).AddrPort() }

// Port is the port the server listens on.
func (e *UDPEcho) Port() uint16 { return e.Addr().Port() }

// Count is the number of datagrams echoed so far.
func (e *UDPEcho) Count() int64 { return e.echoed.Load() }

// Close stops the server.
func (e *UDPEcho) Close() error {
	var err error
	e.once.Do(func() {
		err = e.pc.Close()
		<-e.done
	})
	return err
}

// RoundTrips is the result of [NS.UDPRoundTrips].
type RoundTrips struct {
	// Sent is the number of requests sent, Lost those without a reply in
	// time.
	Sent, Lost int
	// RTT holds the round-trip times of the answered requests, sorted.
	RTT []time.Duration
}

// Percentile returns the p-th percentile (0-100) of the round-trip times,
// nearest rank; 0 when none were answered.
func (r RoundTrips) Percentile(p float64) time.Duration {
	if len(r.RTT) == 0 {
		return 0
	}
	i := int(p/100*float64(len(r.RTT))+0.5) - 1
	return r.RTT[min(max(i, 0), len(r.RTT)-1)]
}

// UDPRoundTrips sends count requests of size bytes (at least 8) from inside
// the namespace to a UDP echo server at addr ("IP:port"), one after the
// other, each waiting up to timeout for its reply, and measures the round
// trips. Each request carries its sequence number, so a late reply to an
// earlier request is not taken for the current one. ctx must have a
// deadline; lost replies are not an error.
func (n *NS) UDPRoundTrips(ctx context.Context, addr string, count, size int, timeout time.Duration) (RoundTrips, error) {
	if err := needBounds(ctx, count); err != nil {
		return RoundTrips{}, err
	}
	if size < 8 || size > 65507 {
		return RoundTrips{}, fmt.Errorf("lab: round-trip size %d out of range 8-65507", size)
	}
	if timeout <= 0 {
		return RoundTrips{}, errors.New("lab: UDPRoundTrips needs a positive timeout")
	}
	c, err := n.Dial(ctx, "udp", addr)
	if err != nil {
		return RoundTrips{}, err
	}
	defer c.Close()
	req, reply := make([]byte, size), make([]byte, 65536)
	res := RoundTrips{RTT: make([]time.Duration, 0, count)}
	for seq := uint64(1); seq <= uint64(count); seq++ {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("lab: [%s] round trips to %s stopped after %d of %d: %w", n.Name, addr, res.Sent, count, context.Cause(ctx))
		}
		binary.BigEndian.PutUint64(req, seq)
		wait := time.Now().Add(timeout)
		if d, _ := ctx.Deadline(); d.Before(wait) {
			wait = d
		}
		if err := c.SetDeadline(wait); err != nil {
			return res, fmt.Errorf("lab: [%s] round trips: %w", n.Name, err)
		}
		start := time.Now()
		if _, err := c.Write(req); err != nil {
			return res, fmt.Errorf("lab: [%s] round trip %d to %s: %w", n.Name, seq, addr, err)
		}
		res.Sent++
		for {
			m, err := c.Read(reply)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				res.Lost++
				break
			}
			if err != nil {
				return res, fmt.Errorf("lab: [%s] round trip %d to %s: %w", n.Name, seq, addr, err)
			}
			if m >= 8 && binary.BigEndian.Uint64(reply) == seq {
				res.RTT = append(res.RTT, time.Since(start))
				break
			}
		}
	}
	slices.Sort(res.RTT)
	return res, nil
}

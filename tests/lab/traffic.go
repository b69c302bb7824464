package lab

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// Outcome is how a TCP connection attempt ended.
type Outcome int

// Outcomes of TCPConnect.
const (
	// Failed: some other error (see ConnectResult.Err).
	Failed Outcome = iota
	// Connected: the handshake completed.
	Connected
	// Refused: a TCP reset or an ICMP unreachable came back.
	Refused
	// TimedOut: nothing came back before the timeout (dropped).
	TimedOut
)

func (o Outcome) String() string {
	switch o {
	case Connected:
		return "connected"
	case Refused:
		return "refused"
	case TimedOut:
		return "timed out"
	default:
		return "failed"
	}
}

// ConnectResult is the result of TCPConnect.
type ConnectResult struct {
	Outcome Outcome
	Err     error // the dial error; nil when Connected
	Elapsed time.Duration
}

func (r ConnectResult) String() string {
	if r.Err != nil {
		return fmt.Sprintf("%s after %v: %v", r.Outcome, r.Elapsed, r.Err)
	}
	return fmt.Sprintf("%s after %v", r.Outcome, r.Elapsed)
}

// TCPConnect tries one TCP connection from inside the namespace to addr
// ("IP:port") and closes it at once when it succeeds.
func (n *NS) TCPConnect(ctx context.Context, addr string, timeout time.Duration) ConnectResult {
	if timeout <= 0 {
		return ConnectResult{Err: errors.New("lab: TCPConnect needs a positive timeout")}
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	c, err := n.Dial(dctx, "tcp", addr)
	res := ConnectResult{Err: err, Elapsed: time.Since(start)}
	var ne net.Error
	switch {
	case err == nil:
		res.Outcome = Connected
		_ = c.Close()
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		res.Outcome = Refused
	case ctx.Err() == nil && (errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()):
		res.Outcome = TimedOut
	default:
		res.Outcome = Failed
	}
	return res
}

// needBounds checks that traffic is bounded by a count and a deadline.
func needBounds(ctx context.Context, count int) error {
	if count <= 0 {
		return fmt.Errorf("lab: traffic needs a positive count, got %d", count)
	}
	if _, ok := ctx.Deadline(); !ok {
		return errors.New("lab: traffic needs a context with a deadline (context.WithTimeout)")
	}
	return ctx.Err()
}

// UDPFlood sends count UDP datagrams of size payload bytes from inside the
// namespace to addr ("IP:port"), at most pps per second (0: as fast as the
// socket takes them). ctx must have a deadline; sending stops there. It
// returns how many datagrams were sent.
func (n *NS) UDPFlood(ctx context.Context, addr string, count, size, pps int) (int, error) {
	if err := needBounds(ctx, count); err != nil {
		return 0, err
	}
	if size < 0 || size > 65507 {
		return 0, fmt.Errorf("lab: UDP payload size %d out of range 0-65507", size)
	}
	if pps < 0 {
		return 0, fmt.Errorf("lab: negative rate %d", pps)
	}
	if err := checkAddr(addr, false); err != nil {
		return 0, err
	}
	dst, err := netip.ParseAddrPort(addr)
	if err != nil {
		return 0, fmt.Errorf("lab: address %q: %w", addr, err)
	}
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	network := "udp4"
	if dst.Addr().Is6() {
		network = "udp6"
	}
	pc, err := n.ListenPacket(network, ":0")
	if err != nil {
		return 0, err
	}
	defer pc.Close()
	conn := pc.(*net.UDPConn)
	deadline, _ := ctx.Deadline()
	if err := conn.SetWriteDeadline(deadline); err != nil {
		return 0, fmt.Errorf("lab: [%s] UDP flood: %w", n.Name, err)
	}

	buf := make([]byte, size)
	start := time.Now()
	var interval time.Duration
	if pps > 0 {
		interval = time.Second / time.Duration(pps)
	}
	sent := 0
	for sent < count {
		if sent%256 == 0 && ctx.Err() != nil {
			break
		}
		if interval > 0 {
			due := start.Add(time.Duration(sent) * interval)
			if wait := time.Until(due); wait > time.Millisecond {
				t := time.NewTimer(wait)
				select {
				case <-ctx.Done():
				case <-t.C:
				}
				t.Stop()
				if ctx.Err() != nil {
					break
				}
			}
		}
		if _, err := conn.WriteToUDPAddrPort(buf, dst); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			return sent, fmt.Errorf("lab: [%s] UDP flood to %s after %d datagrams: %w", n.Name, addr, sent, err)
		}
		sent++
	}
	if sent < count {
		return sent, fmt.Errorf("lab: [%s] UDP flood to %s stopped after %d of %d datagrams: %w", n.Name, addr, sent, count, context.Cause(ctx))
	}
	return sent, nil
}

// pingWait is how long Ping waits for each reply.
const pingWait = time.Second

// Ping sends count ICMP (or ICMPv6) echo requests from inside the namespace
// to addr (a literal IP), one after the other, waiting up to a second for
// each reply, and returns how many replies came back. ctx must have a
// deadline. Lost replies are not an error.
func (n *NS) Ping(ctx context.Context, addr string, count int) (int, error) {
	if err := needBounds(ctx, count); err != nil {
		return 0, err
	}
	dst, err := netip.ParseAddr(addr)
	if err != nil {
		return 0, fmt.Errorf("lab: ping %q: want a literal IP address: %w", addr, err)
	}
	dst = dst.Unmap()
	network, local, reqType, replyType := "ip4:icmp", "0.0.0.0", byte(8), byte(0)
	if dst.Is6() {
		network, local, reqType, replyType = "ip6:ipv6-icmp", "::", 128, 129
	}
	pc, err := n.ListenPacket(network, local)
	if err != nil {
		return 0, err
	}
	defer pc.Close()

	var idb [2]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return 0, fmt.Errorf("lab: ping id: %w", err)
	}
	id := binary.BigEndian.Uint16(idb[:])
	to := &net.IPAddr{IP: dst.AsSlice()}
	msg := make([]byte, 8+32)
	buf := make([]byte, 1500)
	received := 0
	for seq := 1; seq <= count; seq++ {
		if err := ctx.Err(); err != nil {
			return received, fmt.Errorf("lab: [%s] ping %s stopped after %d of %d: %w", n.Name, addr, seq-1, count, context.Cause(ctx))
		}
		msg[0], msg[1] = reqType, 0
		binary.BigEndian.PutUint16(msg[2:], 0)
		binary.BigEndian.PutUint16(msg[4:], id)
		binary.BigEndian.PutUint16(msg[6:], uint16(seq))
		if dst.Is4() { // the kernel computes the ICMPv6 checksum itself
			binary.BigEndian.PutUint16(msg[2:], icmpChecksum(msg))
		}
		if _, err := pc.WriteTo(msg, to); err != nil {
			return received, fmt.Errorf("lab: [%s] ping %s: %w", n.Name, addr, err)
		}
		wait := time.Now().Add(pingWait)
		if d, _ := ctx.Deadline(); d.Before(wait) {
			wait = d
		}
		if err := pc.SetReadDeadline(wait); err != nil {
			return received, fmt.Errorf("lab: [%s] ping: %w", n.Name, err)
		}
		for {
			m, from, err := pc.ReadFrom(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break // lost
			}
			if err != nil {
				return received, fmt.Errorf("lab: [%s] ping %s: %w", n.Name, addr, err)
			}
			ip, ok := from.(*net.IPAddr)
			if !ok || m < 8 || buf[0] != replyType || !ip.IP.Equal(to.IP) ||
				binary.BigEndian.Uint16(buf[4:]) != id || binary.BigEndian.Uint16(buf[6:]) != uint16(seq) {
				continue // someone else's ICMP
			}
			received++
			break
		}
	}
	return received, nil
}

func icmpChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

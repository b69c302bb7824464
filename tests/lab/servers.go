package lab

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// TCPServer is an echo server inside a namespace that counts the
// connections it accepts. It stops on Close and when the lab closes.
type TCPServer struct {
	ln       net.Listener
	accepted atomic.Int64
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	closed   bool
}

// ServeTCP starts an echo server inside the namespace on addr ("IP:port" or
// ":port"; port 0 picks one, see Addr).
func (n *NS) ServeTCP(addr string) (*TCPServer, error) {
	ln, err := n.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &TCPServer{ln: ln, conns: map[net.Conn]struct{}{}}
	if err := n.lab.track(s); err != nil {
		ln.Close()
		return nil, err
	}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

func (s *TCPServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return // closed
		}
		s.accepted.Add(1)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			_, _ = io.Copy(c, c)
			c.Close()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// Addr is the address the server listens on.
func (s *TCPServer) Addr() netip.AddrPort {
	return s.ln.Addr().(*net.TCPAddr).AddrPort()
}

// Port is the port the server listens on.
func (s *TCPServer) Port() uint16 { return s.Addr().Port() }

// Count is the number of connections accepted so far.
func (s *TCPServer) Count() int64 { return s.accepted.Load() }

// WaitCount waits until at least want connections have been accepted, or
// ctx ends (then it returns an error with the count reached).
func (s *TCPServer) WaitCount(ctx context.Context, want int64) error {
	return waitCount(ctx, s.Count, want, "TCP server "+s.Addr().String(), "connections")
}

// Close stops the server and closes its open connections.
func (s *TCPServer) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	err := s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// UDPSink receives UDP datagrams inside a namespace and counts them. It
// stops on Close and when the lab closes.
type UDPSink struct {
	pc      *net.UDPConn
	packets atomic.Int64
	bytes   atomic.Int64
	done    chan struct{}
	once    sync.Once
}

// ServeUDP starts a UDP sink inside the namespace on addr ("IP:port" or
// ":port"; port 0 picks one, see Addr).
func (n *NS) ServeUDP(addr string) (*UDPSink, error) {
	pc, err := n.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	conn := pc.(*net.UDPConn)
	setReadBuffer(conn, 8<<20) // fewer drops in bursts
	s := &UDPSink{pc: conn, done: make(chan struct{})}
	if err := n.lab.track(s); err != nil {
		conn.Close()
		return nil, err
	}
	go s.serve()
	return s, nil
}

func (s *UDPSink) serve() {
	defer close(s.done)
	buf := make([]byte, 65536)
	for {
		m, _, err := s.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			return // closed
		}
		s.packets.Add(1)
		s.bytes.Add(int64(m))
	}
}

// Addr is the address the sink listens on.
func (s *UDPSink) Addr() netip.AddrPort { return s.pc.LocalAddr().(*net.UDPAddr).AddrPort() }

// Port is the port the sink listens on.
func (s *UDPSink) Port() uint16 { return s.Addr().Port() }

// Count is the number of datagrams received so far.
func (s *UDPSink) Count() int64 { return s.packets.Load() }

// Bytes is the number of payload bytes received so far.
func (s *UDPSink) Bytes() int64 { return s.bytes.Load() }

// WaitCount waits until at least want datagrams have arrived, or ctx ends
// (then it returns an error with the count reached).
func (s *UDPSink) WaitCount(ctx context.Context, want int64) error {
	return waitCount(ctx, s.Count, want, "UDP sink "+s.Addr().String(), "datagrams")
}

func waitCount(ctx context.Context, count func() int64, want int64, who, what string) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if count() >= want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: %s got %d of %d %s: %w", who, count(), want, what, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// setReadBuffer raises a socket's receive buffer past net.core.rmem_max
// (SO_RCVBUFFORCE, we are root), falling back to the capped SO_RCVBUF.
func setReadBuffer(conn *net.UDPConn, size int) {
	if rc, err := conn.SyscallConn(); err == nil {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
		}); err == nil && serr == nil {
			return
		}
	}
	_ = conn.SetReadBuffer(size) // best effort
}

// Close stops the sink.
func (s *UDPSink) Close() error {
	var err error
	s.once.Do(func() {
		err = s.pc.Close()
		<-s.done
	})
	return err
}

package tests

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/luafw/luafw/host/packet"
	"github.com/luafw/luafw/host/quic"
	"github.com/luafw/luafw/host/tlshello"
	"github.com/luafw/luafw/tests/lab"
)

// TestEvasionOnKernelPath runs the sni plugin in the router on real NFQUEUE
// and sends ClientHellos from the client the way evasion tools do, with a
// raw socket (the client's own stack would send them in order): the later
// segment first (disorder), the hello fragmented over TLS records in one
// segment and across two, the blocked hello retransmitted, and QUIC
// Initials (v1 and v2). The server's kernel reassembles what arrives; the
// test reads what its sockets got. Each blocked case has an allowed-name
// control, sent after it: once every control's bytes have arrived, no
// blocked connection may have received its whole hello.
func TestEvasionOnKernelPath(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 60*time.Second)
	sni, err := os.ReadFile("../plugins/sni.lua")
	if err != nil {
		t.Fatal(err)
	}
	startDaemon(t, l.Router, map[string]string{
		"luafw.yaml": "offload: {drop: 0x100}\nplugins:\n  - {file: sni.lua, options: {names: [blocked.example], action: drop, hooks: [forward], block_mark: 0x100}}\n",
		"sni.lua":    string(sni),
	})
	srv := newHelloServer(t, l.Server)
	// The client's stack knows nothing of the raw connections: keep it
	// from resetting them when the server answers.
	if _, err := l.Client.Shell(ctx, "nft add table ip s5evasion; nft add chain ip s5evasion out '{ type filter hook output priority 0; }'; nft add rule ip s5evasion out tcp flags rst drop"); err != nil {
		t.Fatal(err)
	}
	rc := newRawClient(t, l.Client, l.Client.Addr4, l.Server.Addr4)

	type tcpCase struct {
		name string
		msg  func(h []byte) []byte
		send func(c *rawConn, msg []byte)
	}
	mid := func(msg []byte) int { return len(msg) / 2 }
	cases := []tcpCase{
		{"disorder", nil, func(c *rawConn, m []byte) { c.data(mid(m), m[mid(m):]); c.data(0, m[:mid(m)]) }},
		{"tls-records-one-segment", func(h []byte) []byte { return tlshello.Fragment(h, 40) }, func(c *rawConn, m []byte) { c.data(0, m) }},
		{"tls-records-two-segments", func(h []byte) []byte { return tlshello.Fragment(h, 40) }, func(c *rawConn, m []byte) { c.data(0, m[:45]); c.data(45, m[45:]) }},
		{"retransmitted", nil, func(c *rawConn, m []byte) {
			for range 3 {
				c.data(0, m)
				time.Sleep(50 * time.Millisecond)
			}
		}},
	}
	type sent struct {
		label   string
		port    uint16
		n       int
		blocked bool
		udp     bool
	}
	var all []sent
	var retransmitted *rawConn
	var retransmittedMsg []byte
	port := uint16(41000)
	for _, blocked := range []bool{true, false} {
		name := "www.allowed.example"
		if blocked {
			name = "www.blocked.example"
		}
		for _, c := range cases {
			msg := tlshello.Build(tlshello.Spec{SNI: name, TLS13: true, ALPN: []string{"h2"}})
			if c.msg != nil {
				msg = c.msg(msg)
			}
			conn := rc.dial(ctx, port)
			c.send(conn, msg)
			if blocked && c.name == "retransmitted" {
				retransmitted, retransmittedMsg = conn, msg
			}
			all = append(all, sent{c.name, port, len(msg), blocked, false})
			port++
		}
		for _, v := range []uint32{quic.V1, quic.V2} {
			rec := tlshello.Build(tlshello.Spec{SNI: name, TLS13: true, ALPN: []string{"h3"}})
			h := rec[5:]
			a, _ := quic.Seal(v, []byte{byte(port), 1, 2, 3, 4, 5, 6, 7}, nil, 0, quic.CryptoFrame(uint64(len(h)/2), h[len(h)/2:]), 1200)
			b, _ := quic.Seal(v, []byte{byte(port), 1, 2, 3, 4, 5, 6, 7}, nil, 1, quic.CryptoFrame(0, h[:len(h)/2]), 1200)
			sendUDP(t, l.Client, port, netip.AddrPortFrom(l.Server.Addr4, 443), a, b)
			all = append(all, sent{fmt.Sprintf("quic-v%d-two-initials", map[uint32]int{quic.V1: 1, quic.V2: 2}[v]), port, 2 * len(a), blocked, true})
			port++
		}
	}
	// Wait for every control's bytes.
	deadline := time.Now().Add(15 * time.Second)
	for _, s := range all {
		if s.blocked {
			continue
		}
		for srv.got(s.udp, s.port) < s.n && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if got := srv.got(s.udp, s.port); got != s.n {
			t.Errorf("%s (control): the server got %d of %d bytes", s.label, got, s.n)
		}
	}
	for _, s := range all {
		if s.blocked {
			if got := srv.got(s.udp, s.port); got >= s.n {
				t.Errorf("%s (blocked): the server got all %d bytes", s.label, got)
			} else {
				t.Logf("%s (blocked): the server got %d of %d bytes", s.label, got, s.n)
			}
		}
	}
	// The blocked flow's ct mark has offload.drop's bit (sni's block_mark):
	// the kernel drops its retransmissions before the queue. Retransmit
	// until the rule has counted one (ct updates land after the verdict).
	dropped := uint64(0)
	for i := 0; i < 50 && dropped == 0; i++ {
		retransmitted.data(0, retransmittedMsg)
		time.Sleep(100 * time.Millisecond)
		dropped = ctMarkDrops(t, ctx, l.Router)
	}
	if dropped == 0 {
		t.Error("no retransmission of the blocked hello was dropped by the ct mark rule")
	}
	if got := srv.got(false, retransmitted.sport); got >= len(retransmittedMsg) {
		t.Errorf("retransmitted: the server got all %d bytes", got)
	}
	t.Logf("retransmissions dropped in the kernel by ct mark: %d", dropped)
}

var ctMarkDropRE = regexp.MustCompile(`ct mark & 0x00000100 == 0x00000100 counter packets (\d+)`)

// ctMarkDrops sums the packets luafw's offload.drop rules dropped.
func ctMarkDrops(t *testing.T, ctx context.Context, ns *lab.NS) uint64 {
	t.Helper()
	out, err := ns.Run(ctx, "nft", "list", "ruleset")
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, m := range ctMarkDropRE.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseUint(m[1], 10, 64)
		n += v
	}
	return n
}

// helloServer counts the bytes each client port sent to port 443, over TCP
// and UDP, in the server namespace.
type helloServer struct {
	mu       sync.Mutex
	tcp, udp map[uint16]int
}

func newHelloServer(t *testing.T, ns *lab.NS) *helloServer {
	t.Helper()
	s := &helloServer{tcp: map[uint16]int{}, udp: map[uint16]int{}}
	var ln net.Listener
	var pc net.PacketConn
	if err := ns.Do(func() (err error) {
		if ln, err = net.Listen("tcp4", ":443"); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp4", ":443")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close(); pc.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				p := uint16(c.RemoteAddr().(*net.TCPAddr).Port)
				buf := make([]byte, 4096)
				c.SetReadDeadline(time.Now().Add(30 * time.Second))
				for {
					n, err := c.Read(buf)
					s.add(false, p, n)
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			s.add(true, uint16(from.(*net.UDPAddr).Port), n)
		}
	}()
	return s
}

func (s *helloServer) add(udp bool, port uint16, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if udp {
		s.udp[port] += n
	} else {
		s.tcp[port] += n
	}
}

func (s *helloServer) got(udp bool, port uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if udp {
		return s.udp[port]
	}
	return s.tcp[port]
}

func sendUDP(t *testing.T, ns *lab.NS, sport uint16, to netip.AddrPort, payloads ...[]byte) {
	t.Helper()
	var c *net.UDPConn
	if err := ns.Do(func() (err error) {
		c, err = net.DialUDP("udp4", &net.UDPAddr{Port: int(sport)}, net.UDPAddrFromAddrPort(to))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, p := range payloads {
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
	}
}

// rawClient sends hand-made TCP segments from the client namespace and
// reads the server's SYN/ACKs.
type rawClient struct {
	t          *testing.T
	send, recv int
	src, dst   netip.Addr
}

func newRawClient(t *testing.T, ns *lab.NS, src, dst netip.Addr) *rawClient {
	t.Helper()
	rc := &rawClient{t: t, src: src, dst: dst}
	if err := ns.Do(func() (err error) {
		if rc.send, err = syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_RAW); err != nil {
			return err
		}
		if rc.recv, err = syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_TCP); err != nil {
			return err
		}
		tv := syscall.NsecToTimeval(int64(200 * time.Millisecond))
		return syscall.SetsockoptTimeval(rc.recv, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(rc.send); syscall.Close(rc.recv) })
	return rc
}

// rawConn is one connection the raw client opened.
type rawConn struct {
	rc          *rawClient
	sport       uint16
	isn, rcvNxt uint32
}

func (rc *rawClient) write(s packet.Spec) {
	s.Src, s.Dst, s.Proto, s.DstPort = rc.src, rc.dst, packet.ProtoTCP, 443
	b, err := packet.Build(s)
	if err != nil {
		rc.t.Fatal(err)
	}
	if err := syscall.Sendto(rc.send, b, 0, &syscall.SockaddrInet4{Addr: rc.dst.As4()}); err != nil {
		rc.t.Fatal(err)
	}
}

// dial makes the handshake from sport.
func (rc *rawClient) dial(ctx context.Context, sport uint16) *rawConn {
	c := &rawConn{rc: rc, sport: sport, isn: uint32(sport) * 1000}
	for attempt := 0; attempt < 10 && ctx.Err() == nil; attempt++ {
		rc.write(packet.Spec{SrcPort: sport, TCPFlags: packet.TCPSyn, Seq: c.isn})
		if seq, err := rc.synAck(sport); err == nil {
			c.rcvNxt = seq + 1
			rc.write(packet.Spec{SrcPort: sport, TCPFlags: packet.TCPAck, Seq: c.isn + 1, Ack: c.rcvNxt})
			return c
		}
	}
	rc.t.Fatalf("no SYN/ACK for port %d", sport)
	return nil
}

// synAck waits for the server's SYN/ACK to sport and returns its sequence
// number.
func (rc *rawClient) synAck(sport uint16) (uint32, error) {
	buf := make([]byte, 2048)
	for range 50 {
		n, _, err := syscall.Recvfrom(rc.recv, buf, 0)
		if err != nil {
			return 0, err
		}
		var p packet.Parsed
		p.Decode(buf[:n])
		if p.Proto == packet.ProtoTCP && p.Src == rc.dst && p.SrcPort == 443 && p.DstPort == sport &&
			p.TCPFlags&(packet.TCPSyn|packet.TCPAck) == packet.TCPSyn|packet.TCPAck {
			return binary.BigEndian.Uint32(buf[p.L4Off+4:]), nil
		}
	}
	return 0, errors.New("no SYN/ACK")
}

// data sends payload at offset off of the connection's stream.
func (c *rawConn) data(off int, payload []byte) {
	c.rc.write(packet.Spec{SrcPort: c.sport, TCPFlags: packet.TCPAck | packet.TCPPsh, Seq: c.isn + 1 + uint32(off), Ack: c.rcvNxt, Payload: payload})
}

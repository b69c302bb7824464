package tests

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/luafw/luafw/tests/lab"
)

// rewritePlugin rewrites forwarded packets by destination port.
const rewritePlugin = `
fw.register{hook="forward", fn=function(pkt)
	local d = pkt.dport
	if pkt.proto == "udp" and d == 7001 then
		assert(pkt:set_payload("REWRITTEN:" .. pkt.payload))
	elseif pkt.proto == "tcp" and d == 7002 and #pkt.payload > 0 then
		assert(pkt:set_payload(string.upper(pkt.payload)))
	elseif pkt.proto == "tcp" and d == 7003 and pkt.tcp.syn then
		assert(pkt:clamp_mss(1000))
	elseif pkt.proto == "udp" and d == 7004 then
		assert(pkt:set_ttl(33))
		assert(pkt:set_dscp(10))
	end
end}`

// TestRewritesOnTheRealPath: the server's applications read the payloads
// luafw rewrote on the router (the kernel drops segments with a bad checksum,
// so reading them proves the checksums), the server's end of a connection
// whose SYN was clamped uses the clamped MSS, and a counting rule after luafw
// sees the new TTL and DSCP; IPv4 and IPv6.
func TestRewritesOnTheRealPath(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 90*time.Second)
	if _, err := l.Router.Shell(ctx, `
iptables -t mangle -A POSTROUTING -p udp --dport 7004 -m ttl --ttl-eq 33 -m dscp --dscp 10 -j ACCEPT
ip6tables -t mangle -A POSTROUTING -p udp --dport 7004 -m hl --hl-eq 33 -m dscp --dscp 10 -j ACCEPT`); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, l.Router, map[string]string{
		"luafw.yaml": "plugins:\n  - file: rw.lua\n",
		"rw.lua":     rewritePlugin,
	})
	for _, fam := range []struct {
		name string
		addr netip.Addr
	}{{"ipv4", l.Server.Addr4}, {"ipv6", l.Server.Addr6}} {
		t.Run(fam.name, func(t *testing.T) {
			checkUDPRewrite(t, l, fam.addr)
			checkTCPRewrite(t, l, fam.addr)
			checkMSSClamp(t, l, fam.addr)
		})
	}
	const n = 20
	for _, addr := range []netip.Addr{l.Server.Addr4, l.Server.Addr6} {
		sink, err := l.Server.ServeUDP(net.JoinHostPort(addr.String(), "7004"))
		if err != nil {
			t.Fatal(err)
		}
		if sent, err := l.Client.UDPFlood(ctx, net.JoinHostPort(addr.String(), "7004"), n, 64, 1000); err != nil || sent != n {
			t.Fatalf("flood: sent %d, %v", sent, err)
		}
		if err := sink.WaitCount(ctx, n); err != nil {
			t.Error(err)
		}
		sink.Close()
	}
	v4, _, err4 := l.Router.IptablesCounter(ctx, "mangle", "POSTROUTING", "--dport 7004")
	v6, _, err6 := l.Router.Ip6tablesCounter(ctx, "mangle", "POSTROUTING", "--dport 7004")
	if err4 != nil || err6 != nil || v4 != n || v6 != n {
		t.Errorf("rule after luafw saw ttl/hl 33 and dscp 10 on %d (IPv4) and %d (IPv6) of %d packets (%v, %v)", v4, v6, n, err4, err6)
	}
}

// checkUDPRewrite: the server reads the grown payload.
func checkUDPRewrite(t *testing.T, l *lab.Lab, addr netip.Addr) {
	pc, err := l.Server.ListenPacket("udp", net.JoinHostPort(addr.String(), "7001"))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c, err := l.Client.Dial(testCtx(t, 10*time.Second), "udp", net.JoinHostPort(addr.String(), "7001"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 2048)
	for try := 0; try < 5; try++ {
		if _, err := c.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		_ = pc.SetReadDeadline(time.Now().Add(time.Second))
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			continue
		}
		if got := string(buf[:n]); got != "REWRITTEN:hello" {
			t.Fatalf("server read %q, want the rewritten payload", got)
		}
		return
	}
	t.Fatal("server read nothing: rewritten UDP datagrams did not arrive")
}

// checkTCPRewrite: the server's application reads the upper-cased bytes.
func checkTCPRewrite(t *testing.T, l *lab.Lab, addr netip.Addr) {
	ln, err := l.Server.Listen("tcp", net.JoinHostPort(addr.String(), "7002"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer conn.Close()
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, _ := io.ReadAll(conn)
		got <- b
	}()
	c, err := l.Client.Dial(testCtx(t, 10*time.Second), "tcp", net.JoinHostPort(addr.String(), "7002"))
	if err != nil {
		t.Fatal(err)
	}
	msg := bytes.Repeat([]byte("hello, rewritten tcp; "), 200)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if b := <-got; !bytes.Equal(b, bytes.ToUpper(msg)) {
		t.Fatalf("server read %d bytes %.60q..., want %d upper-cased bytes", len(b), b, len(msg))
	}
}

// checkMSSClamp: the server's socket for a connection whose SYN luafw
// clamped to 1000 sends segments of at most 1000 bytes (TCP_MAXSEG), while
// an unclamped connection gets the link's full MSS.
func checkMSSClamp(t *testing.T, l *lab.Lab, addr netip.Addr) {
	for _, tc := range []struct {
		port    string
		clamped bool
	}{{"7003", true}, {"7005", false}} {
		ln, err := l.Server.Listen("tcp", net.JoinHostPort(addr.String(), tc.port))
		if err != nil {
			t.Fatal(err)
		}
		mss := make(chan int, 1)
		go func() {
			conn, err := ln.Accept()
			if err != nil {
				mss <- -1
				return
			}
			defer conn.Close()
			mss <- tcpMaxSeg(conn)
		}()
		c, err := l.Client.Dial(testCtx(t, 10*time.Second), "tcp", net.JoinHostPort(addr.String(), tc.port))
		if err != nil {
			t.Fatal(err)
		}
		got := <-mss
		c.Close()
		ln.Close()
		if tc.clamped && (got <= 0 || got > 1000) || !tc.clamped && got <= 1000 {
			t.Errorf("port %s: server's MSS %d (clamped: %v)", tc.port, got, tc.clamped)
		}
	}
}

func tcpMaxSeg(conn net.Conn) int {
	rc, err := conn.(syscall.Conn).SyscallConn()
	if err != nil {
		return -1
	}
	v := -1
	_ = rc.Control(func(fd uintptr) {
		if n, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG); err == nil {
			v = n
		}
	})
	return v
}

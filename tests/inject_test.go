package tests

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/luafw/luafw/tests/lab"
)

// resetPlugin ends a connection whose client sends "KILL": resets to both
// ends, and the segment is dropped.
const resetPlugin = `
fw.register{hook="forward", fn=function(pkt)
	if pkt.proto == "tcp" and pkt.dport == 7010 and pkt.payload:find("KILL", 1, true) then
		assert(pkt:reply_reset())
		return fw.DROP
	end
end}`

// TestReplyResetOnTheRealPath: reply_reset ends an established connection
// at both ends at once: the client's and the server's next reads fail with
// ECONNRESET (not EOF, not a timeout). IPv4 and IPv6.
func TestReplyResetOnTheRealPath(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 60*time.Second)
	startDaemon(t, l.Router, map[string]string{"luafw.yaml": "plugins:\n  - file: rst.lua\n", "rst.lua": resetPlugin})
	for _, addr := range []netip.Addr{l.Server.Addr4, l.Server.Addr6} {
		ln, err := l.Server.Listen("tcp", net.JoinHostPort(addr.String(), "7010"))
		if err != nil {
			t.Fatal(err)
		}
		serverErr := make(chan error, 1)
		go func() {
			conn, err := ln.Accept()
			if err != nil {
				serverErr <- err
				return
			}
			defer conn.Close()
			buf := make([]byte, 64)
			if n, err := conn.Read(buf); err != nil || string(buf[:n]) != "hello" {
				serverErr <- errors.New("first read: " + string(buf[:n]))
				return
			}
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = conn.Read(buf)
			serverErr <- err
		}()
		c, err := l.Client.Dial(ctx, "tcp", net.JoinHostPort(addr.String(), "7010"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // keep "hello" and "KILL" in separate segments
		if _, err := c.Write([]byte("KILL")); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, cerr := c.Read(make([]byte, 64))
		serr := <-serverErr
		c.Close()
		ln.Close()
		if !errors.Is(cerr, syscall.ECONNRESET) || !errors.Is(serr, syscall.ECONNRESET) {
			t.Errorf("%s: client read %v, server read %v; want both reset", addr, cerr, serr)
		}
	}
}

// floodPlugin answers each datagram to 7011 with as many packets as it may
// send, from postrouting, where its own injected packets would come back if
// the inject mark did not keep them out of the queues.
const floodPlugin = `
fw.register{hook="postrouting", fn=function(pkt)
	if pkt.proto ~= "udp" then return end
	if pkt.sport == 7011 then error("an injected packet looped back into luafw") end
	if pkt.dport ~= 7011 then return end
	for i = 1, 1000 do
		local ok, why = fw.send(packet.udp{src=pkt.dst, dst=pkt.src, sport=7011, dport=pkt.sport, payload="flood"}, {mark=1})
		if not ok then
			assert(why:find("rate limit"), why)
			break
		end
	end
	return fw.DROP
end}`

// TestInjectRateLimited: a script that injects in a loop gets the burst and
// the refill of its bucket, no more, and its packets do not loop back.
func TestInjectRateLimited(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 60*time.Second)
	d := startDaemon(t, l.Router, map[string]string{
		"luafw.yaml": "plugins:\n  - file: flood.lua\ninject: {rate: 5, burst: 10}\n",
		"flood.lua":  floodPlugin,
	})
	got := 0
	start := time.Now()
	for _, addr := range []netip.Addr{l.Server.Addr4, l.Server.Addr6} {
		c, err := l.Client.Dial(ctx, "udp", net.JoinHostPort(addr.String(), "7011"))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 5; i++ {
			if _, err := c.Write([]byte("go")); err != nil {
				t.Fatal(err)
			}
		}
		buf := make([]byte, 64)
		for {
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			n, err := c.Read(buf)
			if err != nil {
				break
			}
			if string(buf[:n]) == "flood" {
				got++
			}
		}
		c.Close()
	}
	elapsed := time.Since(start).Seconds()
	t.Logf("received %d injected packets in %.1fs (burst 10, 5/s)", got, elapsed)
	// 10 sent at once, then 5 per second; 10 datagrams could ask for 10,000.
	if limit := 10 + int(5*elapsed) + 1; got < 10 || got > limit {
		t.Errorf("client received %d injected packets in %.1fs; want 10..%d", got, elapsed, limit)
	}
	if strings.Contains(d.logs.String(), "looped back") {
		t.Errorf("an injected packet came back into luafw:\n%s", d.logs)
	}
}

// icmpPlugin answers UDP to 7020 with a port unreachable of its own.
const icmpPlugin = `
fw.register{hook="forward", fn=function(pkt)
	if pkt.proto == "udp" and pkt.dport == 7020 then
		if pkt.family == 4 then assert(pkt:reply_icmp(3, 3)) else assert(pkt:reply_icmp(1, 4)) end
		return fw.DROP
	end
end}`

// TestReplyICMPOnTheRealPath: the client's connected UDP socket gets
// ECONNREFUSED from the port unreachable luafw sends in the server's name
// (the server listens, so it would never send one): the client's kernel
// took the checksum and matched the quoted packet to the socket.
func TestReplyICMPOnTheRealPath(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 60*time.Second)
	startDaemon(t, l.Router, map[string]string{"luafw.yaml": "plugins:\n  - file: icmp.lua\n", "icmp.lua": icmpPlugin})
	for _, addr := range []netip.Addr{l.Server.Addr4, l.Server.Addr6} {
		// A listener, so the server's own kernel never answers unreachable.
		sink, err := l.Server.ServeUDP(net.JoinHostPort(addr.String(), "7020"))
		if err != nil {
			t.Fatal(err)
		}
		defer sink.Close()
		c, err := l.Client.Dial(ctx, "udp", net.JoinHostPort(addr.String(), "7020"))
		if err != nil {
			t.Fatal(err)
		}
		var rerr error
		for try := 0; try < 3 && !errors.Is(rerr, syscall.ECONNREFUSED); try++ {
			if _, err := c.Write([]byte("anyone?")); err != nil {
				rerr = err
				continue
			}
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			_, rerr = c.Read(make([]byte, 16))
		}
		c.Close()
		if !errors.Is(rerr, syscall.ECONNREFUSED) || sink.Count() != 0 {
			t.Errorf("%s: client read %v, want ECONNREFUSED from luafw's ICMP; server got %d datagrams, want 0", addr, rerr, sink.Count())
		}
	}
}

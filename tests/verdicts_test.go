package tests

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/luafw/luafw/tests/lab"
)

func routerAddr(l *lab.Lab) netip.Addr { return l.Router.Ifaces[0].Addr4.Addr() }

// TestMarks: a packet mark set by a plugin is seen by a kernel rule after
// the queue, and by policy routing (ip rule fwmark) when set before the
// routing decision.
func TestMarks(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 60*time.Second)
	// Count forwarded packets by mark after luafw (mangle POSTROUTING).
	if _, err := l.Router.Shell(ctx, `
iptables -t mangle -A POSTROUTING -p udp --dport 5001 -m mark --mark 0x10/0xff -j ACCEPT
iptables -t mangle -A POSTROUTING -p udp --dport 5002 -m mark --mark 0x10/0xff -j ACCEPT
# policy routing: packets marked 0x20 are routed by table 100, which
# forbids the server's network
ip rule add fwmark 0x20/0xff lookup 100
ip route add prohibit 10.201.2.0/24 table 100`); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, l.Router, map[string]string{
		"luafw.yaml": "plugins:\n  - file: mark.lua\n  - file: route.lua\n",
		"mark.lua": `fw.register{hook="forward", fn=function(pkt)
			if pkt.proto == "udp" and pkt.dport == 5001 then pkt:set_mark(0x10, 0xff) end
		end}`,
		"route.lua": `fw.register{hook="prerouting", priority="mangle", fn=function(pkt)
			if pkt.proto == "tcp" and pkt.dport == 5003 then pkt:set_mark(0x20, 0xff) end
		end}`,
	})
	sink, err := l.Server.ServeUDP(":5001")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	const n = 200
	for _, port := range []int{5001, 5002} {
		if sent, err := l.Client.UDPFlood(ctx, fmt.Sprintf("%s:%d", l.Server.Addr4, port), n, 64, 2000); err != nil || sent != n {
			t.Fatalf("flood to %d: sent %d, %v", port, sent, err)
		}
	}
	sink.WaitCount(ctx, n)
	marked, _, err := l.Router.IptablesCounter(ctx, "mangle", "POSTROUTING", "--dport 5001")
	if err != nil {
		t.Fatal(err)
	}
	unmarked, _, err := l.Router.IptablesCounter(ctx, "mangle", "POSTROUTING", "--dport 5002")
	if err != nil {
		t.Fatal(err)
	}
	if marked != n || unmarked != 0 {
		t.Errorf("kernel saw mark 0x10 on %d packets to 5001 (want %d) and on %d to 5002 (want 0)", marked, n, unmarked)
	}
	if got := sink.Count(); got != n {
		t.Errorf("server received %d of %d marked packets", got, n)
	}

	serveTCP(t, l.Server, 5003, 5004)
	if res := connect(ctx, l.Client, l.Server.Addr4, 5003, 2*time.Second); res.Outcome != lab.Refused {
		t.Errorf("marked connection: %v, want refused by the prohibit route of table 100", res)
	}
	if res := connect(ctx, l.Client, l.Server.Addr4, 5004, 2*time.Second); res.Outcome != lab.Connected {
		t.Errorf("unmarked connection: %v, want connected", res)
	}
}

// TestConntrackMark: a ct mark set on the first packet of a new TCP
// connection shows in conntrack and on the connection's later packets, both
// to kernel rules and to scripts. The update goes to the kernel after the
// SYN's verdict, when its entry exists, so it applies at the first try:
// none retried, none failed.
func TestConntrackMark(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 60*time.Second)
	if _, err := l.Router.Shell(ctx, `
iptables -t mangle -A POSTROUTING -p tcp --dport 3001 -m connmark --mark 0x77 -m conntrack --ctstate ESTABLISHED
iptables -t mangle -A POSTROUTING -p tcp --dport 3001 -m mark --mark 0x5`); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, l.Router, map[string]string{
		"luafw.yaml": "plugins:\n  - file: ct.lua\n",
		"ct.lua": `fw.register{hook="forward", fn=function(pkt)
			if pkt.proto ~= "tcp" or (pkt.dport ~= 3001 and pkt.sport ~= 3001) then return end
			if pkt.ct.state == "new" then
				pkt.ct:set_mark(0x77)
				log.info("classified", {state = pkt.ct.state, syn = pkt.tcp.syn})
			elseif pkt.ct.state == "established" and pkt.ct.mark == 0x77 then
				pkt:set_mark(0x5)
			end
		end}`,
	}, "--metrics", "127.0.0.1:0")
	serveTCP(t, l.Server, 3001)
	conn, err := l.Client.Dial(ctx, "tcp", netip.AddrPortFrom(l.Server.Addr4, 3001).String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A few round trips: later packets of the connection.
	buf := make([]byte, 5)
	for i := 0; i < 5; i++ {
		conn.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := conn.Write([]byte("ping\n")); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := l.Router.Conntrack(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, e := range entries {
		if e.Proto == 6 && e.Dst == l.Server.Addr4 && e.DPort == 3001 {
			found = true
			if e.Mark != 0x77 {
				t.Errorf("conntrack entry mark = %#x, want 0x77", e.Mark)
			}
		}
	}
	if !found {
		t.Errorf("no conntrack entry for the connection: %+v", entries)
	}
	kernel, _, err := l.Router.IptablesCounter(ctx, "mangle", "POSTROUTING", "connmark")
	if err != nil {
		t.Fatal(err)
	}
	script, _, err := l.Router.IptablesCounter(ctx, "mangle", "POSTROUTING", "--mark 0x5")
	if err != nil {
		t.Fatal(err)
	}
	// 5 requests after the handshake's final ACK: at least 5 later packets
	// from the client carried the ct mark.
	if kernel < 5 {
		t.Errorf("kernel connmark rule matched %d later packets, want >= 5", kernel)
	}
	if script < 5 {
		t.Errorf("the script saw ct mark 0x77 on %d later packets, want >= 5", script)
	}
	body := scrape(t, d)
	applied := metricValue(body, `luafw_ct_updater_total{result="applied"}`)
	retried := metricValue(body, `luafw_ct_updater_total{result="retried"}`)
	failed := metricValue(body, `luafw_ct_updater_total{result="failed"}`)
	if applied < 1 || retried != 0 || failed != 0 {
		t.Errorf("conntrack updater: applied %v, retried %v, failed %v; want >= 1 applied at the first try", applied, retried, failed)
	}
}

// TestRejectAndRepeat: REJECT refuses at once (TCP reset, ICMP port
// unreachable for UDP); REPEAT re-runs the hook without looping.
func TestRejectAndRepeat(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 60*time.Second)
	d := startDaemon(t, l.Router, map[string]string{
		"luafw.yaml": "plugins:\n  - file: rr.lua\n",
		"rr.lua": `local repeats = state.counter("repeats")
		fw.register{hook="forward", fn=function(pkt)
			if pkt.dport == 4001 then return fw.REJECT end
			if pkt.dport == 4002 then repeats:incr() return fw.REPEAT end
		end}`,
	}, "--metrics", "127.0.0.1:0")
	_ = d
	serveTCP(t, l.Server, 4001, 4002)
	res := connect(ctx, l.Client, l.Server.Addr4, 4001, 5*time.Second)
	if res.Outcome != lab.Refused {
		t.Errorf("rejected TCP: %v after %v, want refused (a reset, not a timeout)", res.Outcome, res.Elapsed)
	}
	// UDP: the client's connected socket sees the ICMP port unreachable.
	err := l.Client.Do(func() error {
		c, err := net.Dial("udp", netip.AddrPortFrom(l.Server.Addr4, 4001).String())
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		c.Write([]byte("x"))
		_, err = c.Read(make([]byte, 8))
		if err == nil || !strings.Contains(err.Error(), "refused") {
			return fmt.Errorf("read after rejected UDP: %v, want connection refused", err)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	// REPEAT: the connection works, and each packet was repeated once.
	conn, err := l.Client.Dial(ctx, "tcp", netip.AddrPortFrom(l.Server.Addr4, 4002).String())
	if err != nil {
		t.Fatalf("repeat: %v", err)
	}
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	conn.Write([]byte("hi\n"))
	if _, err := conn.Read(make([]byte, 3)); err != nil {
		t.Fatalf("repeat: echo: %v", err)
	}
	conn.Close()
}

// TestPriorityOrderAcrossDNAT: two callbacks on prerouting at raw and filter
// priority run in that order on the real path, the first seeing the address
// before DNAT and the second after it.
func TestPriorityOrderAcrossDNAT(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 60*time.Second)
	ra, srv := routerAddr(l), l.Server.Addr4
	if _, err := l.Router.Shell(ctx, fmt.Sprintf(`
iptables -t nat -A PREROUTING -d %s -p tcp --dport 6000 -j DNAT --to-destination %s:6000
iptables -t mangle -A POSTROUTING -p tcp --dport 6000 -m mark --mark 0x300/0x300 -j ACCEPT`, ra, srv)); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, l.Router, map[string]string{
		"luafw.yaml": fmt.Sprintf("plugins:\n  - file: order.lua\n    options: {router: %q, server: %q}\n", ra, srv),
		"order.lua": `
fw.register{name="raw", hook="prerouting", priority=fw.priority.raw, fn=function(pkt)
	-- before conntrack: no connection state yet
	if pkt.dport == 6000 and pkt.dst == fw.options.router and pkt.ct.state == nil then pkt:set_mark(0x100, 0x100) end
end}
fw.register{name="filter", hook="prerouting", priority=fw.priority.filter, fn=function(pkt)
	-- runs after DNAT, and after the raw callback (whose mark it sees)
	if pkt.dport == 6000 and pkt.dst == fw.options.server and bit.btest(pkt.mark, 0x100) and pkt.ct.state ~= nil then
		pkt:set_mark(0x200, 0x200)
	end
end}`,
	})
	serveTCP(t, l.Server, 6000)
	if res := connect(ctx, l.Client, ra, 6000, 3*time.Second); res.Outcome != lab.Connected {
		t.Fatalf("connect through DNAT: %v", res)
	}
	n, _, err := l.Router.IptablesCounter(ctx, "mangle", "POSTROUTING", "0x300/0x300")
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Errorf("no packet carried both marks: the raw callback did not see the pre-DNAT address, or the filter one the post-DNAT address, or they ran out of order")
	}
}

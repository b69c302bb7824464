package tests

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/luafw/luafw/tests/lab"
)

// TestHAFailover runs the recipe of examples/ha on two router namespaces:
// keepalived moves the gateway addresses, conntrackd (FTFW) replicates the
// conntrack table, luafw classifies on both. An established TCP connection
// that luafw classified (ct mark with the offload bit) on router A keeps
// flowing through router B after A is lost, with its mark on B, and B's
// luafw never queues one of its packets.
//
//	client br0 (c0 ── A r0, c1 ── B rb0)   LAN 10.201.1.0/24, gateway 10.201.1.254
//	server br0 (s0 ── A r1, s1 ── B rb1)   WAN 10.201.2.0/24, gateway 10.201.2.254
//	A ra3 10.201.7.1 ── B rb3 10.201.7.2   conntrackd sync link
func TestHAFailover(t *testing.T) {
	for _, bin := range []string{"keepalived", "conntrackd"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (scripts/deps.sh installs it)", bin)
		}
	}
	ctx := testCtx(t, 3*time.Minute)
	l := lab.New(t, lab.Options{NoIPv6: true})
	a := l.Router
	b, err := l.AddNS(ctx, "routerb")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range [][6]any{
		{l.Client, "c1", "", b, "rb0", "10.201.1.3/24"},
		{b, "rb1", "10.201.2.3/24", l.Server, "s1", ""},
		{a, "ra3", "10.201.7.1/24", b, "rb3", "10.201.7.2/24"},
	} {
		if err := l.Link(ctx, k[0].(*lab.NS), k[1].(string), k[2].(string), k[3].(*lab.NS), k[4].(string), k[5].(string)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
	// A bridge on each end host stands for the switch both routers sit
	// on; the host keeps its address (and MAC) and routes via the VIP.
	bridge := func(ns *lab.NS, ports [2]string, addr, mac, gw string) {
		t.Helper()
		script := fmt.Sprintf(`ip addr del %[3]s dev %[1]s
ip link add br0 address %[4]s type bridge
ip link set %[1]s master br0
ip link set %[2]s master br0
ip link set br0 up
ip addr add %[3]s dev br0
ip route replace default via %[5]s
`, ports[0], ports[1], addr, mac, gw)
		if _, err := ns.Shell(ctx, script); err != nil {
			t.Fatal(err)
		}
	}
	bridge(l.Client, [2]string{"c0", "c1"}, "10.201.1.2/24", "02:00:0a:c9:01:02", "10.201.1.254")
	bridge(l.Server, [2]string{"s0", "s1"}, "10.201.2.2/24", "02:00:0a:c9:02:02", "10.201.2.254")

	// render writes the example files of one side with the lab's names and
	// starts conntrackd and keepalived with them; it returns keepalived's
	// stopper.
	render := func(ns *lab.NS, side string, lan, wan, sync string) (stopKeepalived func()) {
		t.Helper()
		dir := t.TempDir()
		r := strings.NewReplacer("lan0", lan, "wan0", wan, "sync0", sync,
			"192.168.1.", "10.201.1.", "192.168.2.", "10.201.2.", "10.0.0.0/30", "10.201.7.0/24",
			"10.0.0.1", "10.201.7.1", "10.0.0.2", "10.201.7.2",
			"/var/log/conntrackd.log", filepath.Join(dir, "conntrackd.log"),
			"/var/lock/conntrackd.lock", filepath.Join(dir, "conntrackd.lock"),
			"/run/conntrackd.ctl", filepath.Join(dir, "conntrackd.ctl"))
		for _, f := range []string{"keepalived-" + side + ".conf", "conntrackd-" + side + ".conf"} {
			b, err := os.ReadFile(filepath.Join("..", "examples", "ha", f))
			if err != nil {
				t.Fatal(err)
			}
			writeFiles(t, dir, map[string]string{strings.TrimSuffix(f, "-"+side+".conf") + ".conf": r.Replace(string(b))})
		}
		start(t, ns, "conntrackd", "-C", filepath.Join(dir, "conntrackd.conf"))
		return start(t, ns, "keepalived", "-n", "-l", "-P", "-f", filepath.Join(dir, "keepalived.conf"),
			"-p", filepath.Join(dir, "k.pid"), "-r", filepath.Join(dir, "v.pid"))
	}
	stopKeepalivedA := render(a, "a", "r0", "r1", "ra3")
	render(b, "b", "rb0", "rb1", "rb3")

	files := func() map[string]string {
		m := map[string]string{}
		for _, f := range []string{"luafw.yaml", "classify.lua"} {
			b, err := os.ReadFile(filepath.Join("..", "examples", "ha", f))
			if err != nil {
				t.Fatal(err)
			}
			m[f] = string(b)
		}
		return m
	}
	startDaemon(t, a, files())
	dB := startDaemon(t, b, files())

	hasVIPs := func(ns *lab.NS) bool {
		out, err := ns.Run(ctx, "ip", "-4", "-o", "addr", "show")
		return err == nil && strings.Contains(out, "inet 10.201.1.254/24") && strings.Contains(out, "inet 10.201.2.254/24")
	}
	waitFor(t, 20*time.Second, "A holds both gateway addresses", func() bool { return hasVIPs(a) })

	srv, err := l.Server.ServeTCP(":9000")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	conn, err := l.Client.Dial(ctx, "tcp", "10.201.2.2:9000")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	echo := func(msg string, within time.Duration) error {
		conn.SetDeadline(time.Now().Add(within))
		if _, err := io.WriteString(conn, msg); err != nil {
			return err
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(conn, buf); err != nil {
			return err
		}
		if string(buf) != msg {
			return fmt.Errorf("echo %q, want %q", buf, msg)
		}
		return nil
	}
	if err := echo("through A\n", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	marked := func(ns *lab.NS) func() bool {
		return func() bool {
			cts, err := ns.Conntrack(ctx)
			if err != nil {
				return false
			}
			for _, e := range cts {
				if e.DPort == 9000 && e.Mark&0x100 != 0 {
					return true
				}
			}
			return false
		}
	}
	waitFor(t, 10*time.Second, "the flow is marked on A", marked(a))
	waitFor(t, 10*time.Second, "conntrackd replicated the flow with its mark to B", marked(b))

	// Lose A: keepalived and its links go.
	lost := time.Now()
	stopKeepalivedA()
	if _, err := a.Shell(ctx, "ip link set r0 down\nip link set r1 down\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "B takes over both gateway addresses", func() bool { return hasVIPs(b) })
	start := time.Now()
	var lastErr error
	for i := 0; time.Since(start) < 30*time.Second; i++ {
		if lastErr = echo(fmt.Sprintf("through B %d\n", i), 3*time.Second); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("the established connection did not survive the failover: %v", lastErr)
	}
	t.Logf("B held the gateway addresses %v after A was lost; data flowed %v later",
		start.Sub(lost).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	queuedBefore := queueRuleCount(t, ctx, b)
	for i := range 5 {
		if err := echo(fmt.Sprintf("more %d\n", i), 3*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if n := queueRuleCount(t, ctx, b) - queuedBefore; n != 0 {
		t.Errorf("B queued %d packets of the classified flow (10 went through)", n)
	}
	if !marked(b)() {
		t.Error("the flow's entry on B lost its mark")
	}
	if strings.Contains(dB.logs.String(), "classified flow queued") {
		t.Errorf("B's luafw saw packets of the classified flow:\n%s", dB.logs.String())
	}
	cts, _ := b.Conntrack(ctx)
	for _, e := range cts {
		if e.DPort == 9000 {
			t.Logf("on B: %v:%d -> %v:%d %s mark %#x labels %x", e.Src, e.SPort, e.Dst, e.DPort, e.State, e.Mark, e.Labels)
			if !hasLabel(e.Labels, 5) {
				t.Errorf("the flow's label 5 did not reach B (labels %x)", e.Labels)
			}
		}
	}
	// Control: B does divert what it has not classified yet.
	if res := connect(ctx, l.Client, l.Server.Addr4, 9000, 3*time.Second); res.Outcome != lab.Connected {
		t.Fatalf("a new connection through B: %v", res)
	}
	if queueRuleCount(t, ctx, b) == queuedBefore {
		t.Error("B queued nothing of a new connection either: the check above proves nothing")
	}
}

// hasLabel reports whether conntrack label bit n is set (the kernel's
// bitmap, least significant bit first within each byte).
func hasLabel(labels []byte, n int) bool {
	return n/8 < len(labels) && labels[n/8]&(1<<(n%8)) != 0
}

// start runs a long-lived command in ns until the test ends, or until the
// returned function stops it.
func start(t *testing.T, ns *lab.NS, name string, args ...string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd, err := ns.Command(ctx, name, args...)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	var out syncBuf
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); _ = cmd.Wait() }) }
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("%s in %s:\n%s", name, ns.Role, out.String())
		}
	})
	return stop
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

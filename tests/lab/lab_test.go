package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func hostNetns(t *testing.T) uint64 {
	t.Helper()
	ino, err := nsInode("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return ino
}

// listed reports whether `ip netns list` names the namespace.
func listed(t *testing.T, name string) bool {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatalf("ip netns list: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == name {
			return true
		}
	}
	return false
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func TestTopologyForwards(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	hostFwd, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	l := New(t, Options{})

	seen := map[uint64]bool{hostNetns(t): true}
	for _, n := range l.Namespaces() {
		if seen[n.Inode()] {
			t.Errorf("%s: inode %d not unique / same as host", n.Name, n.Inode())
		}
		seen[n.Inode()] = true
		if !listed(t, n.Name) {
			t.Errorf("%s not in ip netns list", n.Name)
		}
		got := strings.TrimSpace(must[string](t)(n.Run(ctx, "stat", "-L", "-c", "%i", "/proc/self/ns/net")))
		if got != strconv.FormatUint(n.Inode(), 10) {
			t.Errorf("%s: command ran in netns %s, want %d", n.Name, got, n.Inode())
		}
	}
	if v := must[string](t)(l.Router.SysctlValue("net.ipv4.ip_forward")); v != "1" {
		t.Errorf("router ip_forward = %q, want 1", v)
	}
	if v := must[string](t)(l.Client.SysctlValue("net.ipv4.ip_forward")); v != "0" {
		t.Errorf("client ip_forward = %q, want 0", v)
	}
	if after, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); string(after) != string(hostFwd) {
		t.Errorf("host ip_forward changed from %q to %q", hostFwd, after)
	}

	for _, dst := range []netip.Addr{l.Server.Addr4, l.Server.Addr6} {
		got, err := l.Client.Ping(ctx, dst.String(), 3)
		if err != nil || got != 3 {
			t.Errorf("ping client -> %s: %d of 3 replies, err %v", dst, got, err)
		}
	}

	srv := must[*TCPServer](t)(l.Server.ServeTCP(":0"))
	for i, dst := range []netip.Addr{l.Server.Addr4, l.Server.Addr6} {
		addr := netip.AddrPortFrom(dst, srv.Port()).String()
		if res := l.Client.TCPConnect(ctx, addr, 5*time.Second); res.Outcome != Connected {
			t.Errorf("connect %s: %v", addr, res)
		}
		if err := srv.WaitCount(ctx, int64(i+1)); err != nil {
			t.Error(err)
		}
	}
	// Echo through the router with plain Go net code.
	c := must[net.Conn](t)(l.Client.Dial(ctx, "tcp", netip.AddrPortFrom(l.Server.Addr4, srv.Port()).String()))
	defer c.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
		t.Errorf("echo: %q, %v", buf, err)
	}

	closed := netip.AddrPortFrom(l.Server.Addr4, 9).String()
	if res := l.Client.TCPConnect(ctx, closed, 5*time.Second); res.Outcome != Refused {
		t.Errorf("connect to closed port: %v, want refused", res)
	}
	if _, err := l.Router.Shell(ctx, "iptables -A FORWARD -p tcp --dport 9 -j DROP"); err != nil {
		t.Fatal(err)
	}
	if res := l.Client.TCPConnect(ctx, closed, 300*time.Millisecond); res.Outcome != TimedOut {
		t.Errorf("connect through DROP: %v, want timed out", res)
	}
}

func TestGuardRefusesWrongNamespace(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	l := New(t, Options{})
	dir := t.TempDir()

	// Untampered, the same command does run (so the checks below can fail).
	ok := filepath.Join(dir, "ran-ok")
	if _, err := l.Router.Run(ctx, "touch", ok); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ok); err != nil {
		t.Fatalf("untampered command did not run: %v", err)
	}

	for _, bad := range []uint64{l.Client.inode, hostNetns(t), 12345} {
		tampered := *l.Router
		tampered.inode = bad
		file := filepath.Join(dir, fmt.Sprintf("ran-%d", bad))

		_, err := tampered.Run(ctx, "touch", file)
		if !errors.Is(err, ErrWrongNamespace) {
			t.Errorf("Run with inode %d: err %v, want ErrWrongNamespace", bad, err)
		}
		if _, err := tampered.Shell(ctx, "touch "+file); !errors.Is(err, ErrWrongNamespace) {
			t.Errorf("Shell with inode %d: err %v, want ErrWrongNamespace", bad, err)
		}
		cmd := must[*exec.Cmd](t)(tampered.Command(ctx, "touch", file))
		var ee *exec.ExitError
		if err := cmd.Run(); !errors.As(err, &ee) || ee.ExitCode() != guardExit {
			t.Errorf("Command with inode %d: %v, want exit %d", bad, err, guardExit)
		}
		called := false
		if err := tampered.Do(func() error { called = true; return os.WriteFile(file, nil, 0o600) }); !errors.Is(err, ErrWrongNamespace) {
			t.Errorf("Do with inode %d: err %v, want ErrWrongNamespace", bad, err)
		}
		if called {
			t.Errorf("Do with inode %d ran its function", bad)
		}
		if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("refused command ran anyway: %s exists (%v)", file, err)
		}
	}

	// A namespace that does not exist: nothing runs either.
	gone := *l.Router
	gone.Name = l.Router.Name + "-missing"
	file := filepath.Join(dir, "ran-missing")
	if _, err := gone.Run(ctx, "touch", file); err == nil {
		t.Error("Run in a missing namespace succeeded")
	}
	if err := gone.Do(func() error { return os.WriteFile(file, nil, 0o600) }); err == nil {
		t.Error("Do in a missing namespace succeeded")
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("command for a missing namespace ran: %v", err)
	}

	// Only namespaced sysctls.
	if err := l.Router.Sysctl("kernel.hostname", "x"); err == nil {
		t.Error("Sysctl accepted a non-net key")
	}
	if err := l.Router.Sysctl("net/../kernel/hostname", "x"); err == nil {
		t.Error("Sysctl accepted a path escaping net/")
	}
}

// TestDoRestoresNamespace is not parallel: at its end no thread of the
// process may be in any lab namespace.
func TestDoRestoresNamespace(t *testing.T) {
	host := hostNetns(t)
	l := New(t, Options{Prefix: "lfwdo"})
	errc := make(chan error, 60)
	for i := range 60 {
		n := l.Namespaces()[i%3]
		go func() {
			errc <- n.Do(func() error {
				if got := threadNetns(); got != n.inode {
					return fmt.Errorf("inside Do: thread in %d, want %d", got, n.inode)
				}
				switch i % 4 {
				case 1:
					return errSentinel
				case 2:
					panic("boom")
				case 3:
					runtime.Goexit() // what t.FailNow does
				}
				return nil
			})
		}()
	}
	kinds := map[string]int{}
	for i := range 60 {
		err := <-errc
		switch {
		case err == nil:
			kinds["ok"]++
		case errors.Is(err, errSentinel):
			kinds["error"]++
		case errors.Is(err, errGoexit):
			kinds["goexit"]++
		case strings.Contains(err.Error(), "panicked: boom"):
			kinds["panic"]++
		default:
			t.Errorf("Do %d: %v", i, err)
		}
	}
	if kinds["ok"] != 15 || kinds["error"] != 15 || kinds["goexit"] != 15 || kinds["panic"] != 15 {
		t.Errorf("Do results %v, want 15 of each", kinds)
	}
	tasks, err := filepath.Glob("/proc/self/task/*/ns/net")
	if err != nil || len(tasks) == 0 {
		t.Fatalf("listing threads: %v", err)
	}
	for _, p := range tasks {
		if ino, err := nsInode(p); err == nil && ino != host {
			t.Errorf("thread %s left in netns %d (host %d)", p, ino, host)
		}
	}
}

var errSentinel = errors.New("sentinel")

func TestCloseRemovesNamespaces(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	l, err := Start(ctx, Options{})
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("lab unavailable: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	// A process left running inside the router, and a server.
	cmd := must[*exec.Cmd](t)(l.Router.Command(context.Background(), "sleep", "60"))
	if err := cmd.Start(); err != nil {
		l.Close()
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	sink := must[*UDPSink](t)(l.Server.ServeUDP(":0"))

	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	for _, n := range l.Namespaces() {
		if listed(t, n.Name) {
			t.Errorf("%s still listed after Close", n.Name)
		}
	}
	select {
	case err := <-waited:
		if err == nil {
			t.Error("process inside the router exited cleanly, want killed")
		}
	case <-ctx.Done():
		t.Error("process inside the router survived Close")
	}
	if _, _, err := sink.pc.ReadFrom(make([]byte, 1)); err == nil {
		t.Error("sink socket still open after Close")
	}
	if _, err := l.Router.Run(ctx, "true"); err == nil {
		t.Error("Run after Close succeeded")
	}
}

// TestCloseAfterFailingTest runs a child test that builds a lab and then
// fails in a subtest; its namespaces must be gone afterwards.
func TestCloseAfterFailingTest(t *testing.T) {
	if os.Getenv("LAB_FAILING_CHILD") == "1" {
		l := New(t, Options{})
		fmt.Printf("LABNS %s %s %s\n", l.Client.Name, l.Router.Name, l.Server.Name)
		t.Run("fails", func(t *testing.T) { t.Fatal("deliberate failure") })
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("lab: needs root")
	}
	t.Parallel()
	ctx := testCtx(t)
	child := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCloseAfterFailingTest$", "-test.v", "-test.count=1")
	child.Env = append(os.Environ(), "LAB_FAILING_CHILD=1")
	out, err := child.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "deliberate failure") {
		t.Fatalf("child test: err %v, want a failure; output:\n%s", err, out)
	}
	var names []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "LABNS" {
			names = f[1:]
		}
	}
	if len(names) != 3 {
		t.Fatalf("child printed no namespace names:\n%s", out)
	}
	for _, name := range names {
		if listed(t, name) {
			t.Errorf("%s left behind by the failing test", name)
			_ = removeNS(name, 0, map[uint64]bool{hostNetns(t): true})
		}
	}
}

func TestIptablesAndNftCounters(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	l := New(t, Options{})
	r := l.Router

	if _, err := r.Shell(ctx, `
iptables -A FORWARD -p icmp -j ACCEPT
ip6tables -A FORWARD -p udp --dport 7777 -j ACCEPT
nft add table ip labt
nft add chain ip labt fw '{ type filter hook forward priority 10; }'
nft add rule ip labt fw udp dport 5555 counter
`); err != nil {
		t.Fatal(err)
	}
	got, err := l.Client.Ping(ctx, l.Server.Addr4.String(), 4)
	if err != nil || got != 4 {
		t.Fatalf("ping: %d of 4, %v", got, err)
	}
	pk, by, err := r.IptablesCounter(ctx, "filter", "FORWARD", "-p icmp")
	if err != nil || pk != 8 || by == 0 {
		t.Errorf("icmp rule counter: %d packets %d bytes, %v; want 8 packets (4 requests, 4 replies)", pk, by, err)
	}

	v6sink := must[*UDPSink](t)(l.Server.ServeUDP("[" + l.Server.Addr6.String() + "]:7777"))
	if _, err := l.Client.UDPFlood(ctx, netip.AddrPortFrom(l.Server.Addr6, 7777).String(), 25, 10, 0); err != nil {
		t.Fatal(err)
	}
	if err := v6sink.WaitCount(ctx, 25); err != nil {
		t.Fatal(err)
	}
	if pk, _, err := r.Ip6tablesCounter(ctx, "filter", "FORWARD", "--dport 7777"); err != nil || pk != 25 {
		t.Errorf("ip6tables counter: %d, %v; want 25", pk, err)
	}

	if _, err := l.Client.UDPFlood(ctx, netip.AddrPortFrom(l.Server.Addr4, 5555).String(), 30, 10, 0); err != nil {
		t.Fatal(err)
	}
	if pk, by, err := r.NftCounter(ctx, "ip", "labt", "fw", "udp dport 5555"); err != nil || pk != 30 || by != 30*(20+8+10) {
		t.Errorf("nft counter: %d packets %d bytes, %v; want 30 packets, %d bytes", pk, by, err, 30*38)
	}
	if _, _, err := r.IptablesCounter(ctx, "filter", "FORWARD", "-p tcp"); err == nil {
		t.Error("counter of a missing rule: no error")
	}

	// The legacy variant, in a lab without IPv6.
	ll := New(t, Options{Iptables: "iptables-legacy", NoIPv6: true})
	if ll.Server.Addr6.IsValid() {
		t.Errorf("NoIPv6 lab has IPv6 address %s", ll.Server.Addr6)
	}
	if v := must[string](t)(ll.Client.SysctlValue("net.ipv6.conf.all.disable_ipv6")); v != "1" {
		t.Errorf("NoIPv6 lab: disable_ipv6 = %s", v)
	}
	if _, err := ll.Router.Shell(ctx, "iptables-legacy -A FORWARD -p icmp -j ACCEPT"); err != nil {
		t.Fatal(err)
	}
	if got, err := ll.Client.Ping(ctx, ll.Server.Addr4.String(), 3); err != nil || got != 3 {
		t.Fatalf("legacy lab ping: %d of 3, %v", got, err)
	}
	if pk, _, err := ll.Router.IptablesCounter(ctx, "filter", "FORWARD", "-p icmp"); err != nil || pk != 6 {
		t.Errorf("legacy icmp counter: %d, %v; want 6", pk, err)
	}
	// UDP meets no rule: it counts on the policy (iptables-nft keeps no
	// policy counters, legacy does).
	if _, err := ll.Client.UDPFlood(ctx, netip.AddrPortFrom(ll.Server.Addr4, 9).String(), 10, 10, 0); err != nil {
		t.Fatal(err)
	}
	if pk, _, err := ll.Router.IptablesCounter(ctx, "filter", "FORWARD", ""); err != nil || pk != 10 {
		t.Errorf("legacy FORWARD policy counter: %d, %v; want 10", pk, err)
	}
}

func TestParseSaveCounter(t *testing.T) {
	const save = `# Generated by iptables-save
*filter
:INPUT ACCEPT [3:120]
:FORWARD DROP [7:700]
[5:300] -A FORWARD -p udp -m udp --dport 9 -j ACCEPT
[2:80] -A FORWARD -p tcp -m tcp --dport 9 -j DROP
[1:60] -A INPUT -p udp -m udp --dport 9 -j ACCEPT
COMMIT
`
	cases := []struct {
		chain, sub string
		p, b       uint64
		bad        bool
	}{
		{"FORWARD", "-p udp", 5, 300, false},
		{"FORWARD", "--dport 9 -j DROP", 2, 80, false},
		{"INPUT", "--dport 9", 1, 60, false},
		{"FORWARD", "", 7, 700, false},
		{"FORWARD", "--dport 9", 0, 0, true}, // ambiguous
		{"OUTPUT", "-p udp", 0, 0, true},     // missing
	}
	for _, c := range cases {
		p, b, err := parseSaveCounter(save, c.chain, c.sub)
		if (err != nil) != c.bad || p != c.p || b != c.b {
			t.Errorf("%s %q: %d %d %v; want %d %d error=%v", c.chain, c.sub, p, b, err, c.p, c.b, c.bad)
		}
	}
}

func TestConntrackEntries(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	l := New(t, Options{})
	srv := must[*TCPServer](t)(l.Server.ServeTCP(":0"))
	if _, err := l.Router.Shell(ctx, fmt.Sprintf(`
iptables -t filter -A FORWARD -m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT
iptables -t mangle -A FORWARD -p tcp --dport %d -j CONNMARK --set-mark 0x42
`, srv.Port())); err != nil {
		t.Fatal(err)
	}
	c := must[net.Conn](t)(l.Client.Dial(ctx, "tcp", netip.AddrPortFrom(l.Server.Addr4, srv.Port()).String()))
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}

	entries, err := l.Router.Conntrack(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var found *CTEntry
	for i, e := range entries {
		if e.Proto == 6 && e.Src == l.Client.Addr4 && e.Dst == l.Server.Addr4 && e.DPort == srv.Port() {
			found = &entries[i]
		}
	}
	if found == nil {
		t.Fatalf("no conntrack entry for the connection in %v", entries)
	}
	if found.State != "ESTABLISHED" || found.Mark != 0x42 || !found.Assured() ||
		found.ReplySrc != l.Server.Addr4 || found.ReplyDPort != found.SPort {
		t.Errorf("entry %v (reply %s:%d, status %#x): want ESTABLISHED, mark 0x42, assured, reply from the server",
			found, found.ReplySrc, found.ReplyDPort, found.Status)
	}
}

func TestUDPFloodReachesSink(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	l := New(t, Options{})
	for _, dst := range []netip.Addr{l.Server.Addr4, l.Server.Addr6} {
		sink := must[*UDPSink](t)(l.Server.ServeUDP(netip.AddrPortFrom(dst, 0).String()))
		addr := netip.AddrPortFrom(dst, sink.Port()).String()
		sent, err := l.Client.UDPFlood(ctx, addr, 2000, 64, 10000)
		if err != nil || sent != 2000 {
			t.Fatalf("flood %s: sent %d of 2000, %v", addr, sent, err)
		}
		if err := sink.WaitCount(ctx, 2000); err != nil {
			t.Fatal(err)
		}
		if sink.Count() != 2000 || sink.Bytes() != 2000*64 {
			t.Errorf("sink %s: %d datagrams %d bytes, want 2000 and %d", addr, sink.Count(), sink.Bytes(), 2000*64)
		}
	}

	// Traffic must be bounded and go to literal addresses.
	noDeadline := t.Context()
	if _, err := l.Client.UDPFlood(noDeadline, "10.201.2.2:9", 10, 10, 0); err == nil {
		t.Error("UDPFlood without a deadline: no error")
	}
	if _, err := l.Client.Ping(noDeadline, "10.201.2.2", 1); err == nil {
		t.Error("Ping without a deadline: no error")
	}
	if _, err := l.Client.UDPFlood(ctx, "10.201.2.2:9", 0, 10, 0); err == nil {
		t.Error("UDPFlood with count 0: no error")
	}
	if _, err := l.Client.UDPFlood(ctx, "localhost:9", 1, 10, 0); err == nil {
		t.Error("UDPFlood to a name: no error")
	}
}

func TestCleanupStale(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("lab: needs root")
	}
	t.Parallel()
	ctx := testCtx(t)
	prefix := fmt.Sprintf("st%d", os.Getpid())
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	deadPID := dead.Process.Pid
	if pidAlive(deadPID) {
		t.Skipf("pid %d reused already", deadPID)
	}
	stale := fmt.Sprintf("%s-%d-abcdef-router", prefix, deadPID)
	live := fmt.Sprintf("%s-%d-abcdef-router", prefix, os.Getpid())
	other := prefix + "-notours"
	host := map[uint64]bool{hostNetns(t): true}
	for _, name := range []string{stale, live, other} {
		if out, err := exec.CommandContext(ctx, "ip", "netns", "add", name).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v: %s", name, err, out)
		}
		t.Cleanup(func() { _ = removeNS(name, 0, host) })
	}
	staleIno, err := nsInode(netnsDir + "/" + stale)
	if err != nil || host[staleIno] {
		t.Fatalf("stale namespace inode %d: %v", staleIno, err)
	}
	// A process the crashed run left inside.
	proc := exec.Command("ip", "netns", "exec", stale, "sleep", "60")
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- proc.Wait() }()
	// Wait until it is inside the namespace.
	for ctx.Err() == nil {
		if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", proc.Process.Pid)); l == fmt.Sprintf("net:[%d]", staleIno) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}

	if err := CleanupStale(prefix); err != nil {
		t.Fatal(err)
	}
	if listed(t, stale) {
		t.Errorf("stale %s not removed", stale)
	}
	if !listed(t, live) || !listed(t, other) {
		t.Errorf("CleanupStale removed a live or foreign namespace")
	}
	select {
	case err := <-waited:
		if err == nil {
			t.Error("process in the stale namespace exited cleanly, want killed")
		}
	case <-ctx.Done():
		t.Error("process in the stale namespace survived")
	}
	if err := CleanupStale("bad-prefix"); err == nil {
		t.Error("CleanupStale accepted an invalid prefix")
	}
}

// BenchmarkStartClose measures building and removing a whole lab.
func BenchmarkStartClose(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		l, err := Start(b.Context(), Options{Prefix: "lfwbench"})
		if errors.Is(err, ErrUnavailable) {
			b.Skipf("skipping: %v", err)
		}
		if err != nil {
			b.Fatal(err)
		}
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGuardedRun measures one guarded command, and Do, in a namespace.
func BenchmarkGuardedRun(b *testing.B) {
	l := New(b, Options{Prefix: "lfwbench"})
	b.Run("Run", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := l.Router.Run(b.Context(), "true"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Do", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := l.Router.Do(func() error { return nil }); err != nil {
				b.Fatal(err)
			}
		}
	})
}

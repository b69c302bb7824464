package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	luafwd "github.com/luafw/luafw/daemon"
	"github.com/luafw/luafw/tests/lab"
)

// notifySocket plays systemd's side of sd_notify: a datagram socket that
// records every state the daemon sends.
type notifySocket struct {
	path string
	mu   sync.Mutex
	msgs []notifyMsg
}

type notifyMsg struct {
	at    time.Time
	state string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	n := &notifySocket{path: filepath.Join(t.TempDir(), "notify")}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, notifyMsg{time.Now(), string(buf[:k])})
			n.mu.Unlock()
		}
	}()
	return n
}

func (n *notifySocket) snapshot() []notifyMsg {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]notifyMsg(nil), n.msgs...)
}

// count is how many messages so far contain s.
func (n *notifySocket) count(s string) int {
	c := 0
	for _, m := range n.snapshot() {
		if strings.Contains(m.state, s) {
			c++
		}
	}
	return c
}

// waitCount waits until at least want messages contain s.
func (n *notifySocket) waitCount(t *testing.T, s string, want int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for n.count(s) < want {
		if time.Now().After(deadline) {
			t.Fatalf("got %d notifications with %q within %v, want %d; all: %q", n.count(s), s, timeout, want, n.states())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (n *notifySocket) states() []string {
	var out []string
	for _, m := range n.snapshot() {
		out = append(out, m.state)
	}
	return out
}

// TestSystemdNotify runs the daemon as systemd would (NOTIFY_SOCKET,
// WATCHDOG_USEC) and checks what it tells systemd: READY=1 once serving,
// RELOADING=1 then READY=1 around a reload, WATCHDOG=1 while the queue
// readers progress and none while one is stuck, STOPPING=1 at SIGTERM.
func TestSystemdNotify(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 90*time.Second)
	ns := listenNotify(t)
	dir := t.TempDir()
	// loops.lua holds its reader for 1s on one packet to port 7002 (its
	// budget, the largest a configuration may set), 4 watchdog intervals.
	writeFiles(t, dir, map[string]string{
		"luafw.yaml": "budget: 1s\nplugins:\n  - file: drop.lua\n  - {file: loops.lua, budget: 1s}\n",
		"drop.lua":   drop23,
		"loops.lua":  `fw.register{hook="forward", fn=function(pkt) if pkt.dport == 7002 then while true do end end end}`,
	})
	const interval = 250 * time.Millisecond
	d := startDaemonEnv(t, l.Router, filepath.Join(dir, "luafw.yaml"), filepath.Join(dir, "luafw.pid"),
		[]string{"NOTIFY_SOCKET=" + ns.path, fmt.Sprintf("WATCHDOG_USEC=%d", interval.Microseconds())},
		"--metrics", "127.0.0.1:0")

	ns.waitCount(t, "READY=1", 1, 5*time.Second)
	if code, body := getMetricsPath(t, d, "/healthz"); code != http.StatusOK || !strings.HasPrefix(body, "ok: generation 1") {
		t.Errorf("/healthz once ready: %d %q, want 200 ok", code, body)
	}
	// luafw_build_info names the version luafw --version prints.
	out, err := exec.Command(luafwBinary(t), "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	info := fmt.Sprintf(`luafw_build_info{goversion=%q,version=%q}`, runtime.Version(), strings.TrimPrefix(strings.TrimSpace(string(out)), "luafw "))
	if v := metricValue(scrape(t, d), info); v != 1 {
		t.Errorf("%s = %v, want 1", info, v)
	}
	first := ns.snapshot()[0].state
	if !strings.Contains(first, "READY=1") || !strings.Contains(first, "STATUS=generation 1: 2 plugins") {
		t.Errorf("first notification %q, want READY=1 with a STATUS line", first)
	}
	// Pings come while the readers are idle and while they work.
	ns.waitCount(t, "WATCHDOG=1", 2, 5*time.Second)
	serveTCP(t, l.Server, 23, 80, 7002)
	if res := connect(ctx, l.Client, l.Server.Addr4, 80, 2*time.Second); res.Outcome != lab.Connected {
		t.Fatalf("port 80: %v", res)
	}
	pings := ns.count("WATCHDOG=1")
	ns.waitCount(t, "WATCHDOG=1", pings+2, 5*time.Second)

	// A reload: RELOADING=1 (with MONOTONIC_USEC), then READY=1.
	if out, err := l.Router.Run(ctx, luafwBinary(t), "reload"); err != nil {
		t.Fatalf("luafw reload: %v %s", err, out)
	}
	ns.waitCount(t, "READY=1", 2, 5*time.Second)
	var seq []string
	for _, s := range ns.states() {
		if strings.Contains(s, "RELOADING=1") || strings.Contains(s, "READY=1") {
			seq = append(seq, s)
		}
	}
	if len(seq) != 3 || !strings.Contains(seq[1], "RELOADING=1\nMONOTONIC_USEC=") || !strings.Contains(seq[2], "READY=1\nSTATUS=generation 2") {
		t.Errorf("around the reload: %q, want READY, RELOADING+MONOTONIC_USEC, READY+STATUS", seq)
	}

	// A reader stuck in a script for 1s: pings stop for longer than the
	// watchdog interval (systemd would restart luafw), then resume.
	stuckAt := time.Now()
	go connect(ctx, l.Client, l.Server.Addr4, 7002, 500*time.Millisecond)
	d.waitLog("queue reader is stuck", 10*time.Second)
	// /healthz tells while the reader is stuck (the watchdog noted it
	// before it logged), and recovers with it.
	if code, body := getMetricsPath(t, d, "/healthz"); code != http.StatusServiceUnavailable && !strings.Contains(d.logs.String(), "resuming WATCHDOG=1") {
		t.Errorf("/healthz with a reader stuck: %d %q, want 503", code, body)
	} else if !strings.Contains(body, "queue reader stuck: segment forward@1") && code == http.StatusServiceUnavailable {
		t.Errorf("/healthz with a reader stuck says %q", body)
	}
	d.waitLog("resuming WATCHDOG=1", 10*time.Second)
	if code, body := getMetricsPath(t, d, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz after the reader progressed again: %d %q, want 200", code, body)
	}
	pings = ns.count("WATCHDOG=1")
	ns.waitCount(t, "WATCHDOG=1", pings+1, 5*time.Second)
	var gap time.Duration
	var last time.Time
	for _, m := range ns.snapshot() {
		if m.state != "WATCHDOG=1" {
			continue
		}
		if !last.IsZero() && m.at.After(stuckAt) && m.at.Sub(last) > gap {
			gap = m.at.Sub(last)
		}
		last = m.at
	}
	if gap <= interval {
		t.Errorf("longest gap between pings after the reader got stuck: %v, want more than the watchdog interval %v", gap, interval)
	}
	if !strings.Contains(d.logs.String(), "segment forward@1 queues [1000") {
		t.Errorf("the stuck log does not name the segment")
	}

	d.stop()
	if n := ns.count("STOPPING=1"); n != 1 {
		t.Errorf("%d STOPPING=1 notifications after SIGTERM, want 1: %q", n, ns.states())
	}
}

// luafwIn runs luafw with args in ns and returns its exit code, stdout and
// stderr.
func luafwIn(t *testing.T, ctx context.Context, ns *lab.NS, args ...string) (int, string, string) {
	t.Helper()
	cmd, err := ns.Command(ctx, luafwBinary(t), args...)
	if err != nil {
		t.Fatal(err)
	}
	var out, errb syncBuf
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	code := cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		t.Fatalf("luafw %v: %v", args, err)
	}
	return code, out.String(), errb.String()
}

// status is `luafw status --json` in ns.
func status(t *testing.T, ctx context.Context, ns *lab.NS) luafwd.Status {
	t.Helper()
	code, out, errs := luafwIn(t, ctx, ns, "status", "--json")
	if code != 0 {
		t.Fatalf("luafw status: exit %d: %s", code, errs)
	}
	var st luafwd.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("luafw status --json: %v\n%s", err, out)
	}
	return st
}

// TestControlSocket: two daemons in two namespaces, each found and
// controlled through its own namespace's socket; status reports plugins,
// counters and segments; reload reports success or the broken file:line,
// and a failed reload keeps the running set.
func TestControlSocket(t *testing.T) {
	l1, l2 := lab.New(t, lab.Options{}), lab.New(t, lab.Options{})
	ctx := testCtx(t, 120*time.Second)
	drop24 := strings.ReplaceAll(drop23, "23", "24")
	d1 := startDaemon(t, l1.Router, map[string]string{"luafw.yaml": "plugins:\n  - file: p.lua\n", "p.lua": drop23})
	d2 := startDaemon(t, l2.Router, map[string]string{"luafw.yaml": "plugins:\n  - file: q.lua\n", "q.lua": drop24})
	for _, l := range []*lab.Lab{l1, l2} {
		serveTCP(t, l.Server, 23, 24)
	}
	if res := connect(ctx, l1.Client, l1.Server.Addr4, 23, time.Second); res.Outcome != lab.TimedOut {
		t.Fatalf("lab 1 port 23: %v, want dropped", res)
	}

	st1, st2 := status(t, ctx, l1.Router), status(t, ctx, l2.Router)
	for i, c := range []struct {
		st     luafwd.Status
		d      *daemon
		ns     *lab.NS
		plugin string
	}{{st1, d1, l1.Router, "p"}, {st2, d2, l2.Router, "q"}} {
		pid, _ := os.ReadFile(c.d.pidfile)
		if c.st.Config != filepath.Join(c.d.dir, "luafw.yaml") || fmt.Sprint(c.st.PID) != strings.TrimSpace(string(pid)) ||
			c.st.Netns != c.ns.Inode() || c.st.Generation != 1 || c.st.Version == "" {
			t.Errorf("daemon %d: status %+v: wrong daemon (config %s, pidfile %q, netns %d)", i+1, c.st, c.d.dir, pid, c.ns.Inode())
		}
		if len(c.st.Plugins) != 1 || c.st.Plugins[0].Name != c.plugin || len(c.st.Plugins[0].Callbacks) != 1 ||
			c.st.Plugins[0].Callbacks[0].Hook != "forward" || c.st.Plugins[0].Quarantined {
			t.Errorf("daemon %d: plugins %+v", i+1, c.st.Plugins)
		}
		// With conntrack (the default) a forward callback at filter is
		// diverted after it: priority 1, one queue per conntrack state.
		if len(c.st.Segments) != 1 || c.st.Segments[0].Key != "forward@1" || len(c.st.Segments[0].Sockets) != 1 ||
			len(c.st.Segments[0].Sockets[0].Queues) != 5 || len(c.st.Segments[0].Sockets[0].Kernel) != 5 {
			t.Errorf("daemon %d: segments %+v", i+1, c.st.Segments)
		}
		sock := luafwd.PathsFor(luafwd.DefaultRunDir, c.ns.Inode()).Socket
		if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("daemon %d: control socket %s: %v", i+1, sock, err)
		}
	}
	// Counters: the dropped SYN(s) to 23 in lab 1, nothing in lab 2.
	if cb := st1.Plugins[0].Callbacks[0]; cb.Calls == 0 || cb.Verdicts["drop"] == 0 || st1.Segments[0].Verdicts["drop"] == 0 ||
		st1.Segments[0].Sockets[0].Received == 0 {
		t.Errorf("lab 1 counters after a dropped connection: callback %+v, segment %+v", cb, st1.Segments[0])
	}
	if st2.Segments[0].Verdicts["drop"] != 0 {
		t.Errorf("lab 2 counted drops it never saw: %+v", st2.Segments[0])
	}
	// The readable form names the plugin and the segment.
	if code, out, errs := luafwIn(t, ctx, l1.Router, "status"); code != 0 || !strings.Contains(out, "forward@1") ||
		!strings.Contains(out, "generation 1") || !strings.Contains(out, "drop=") {
		t.Errorf("luafw status: exit %d\n%s%s", code, out, errs)
	}

	// A good reload in lab 1 only.
	writeFiles(t, d1.dir, map[string]string{"p.lua": drop24})
	code, out, errs := luafwIn(t, ctx, l1.Router, "reload")
	if code != 0 || !strings.HasPrefix(out, "reloaded: generation 2, 1 plugins") {
		t.Fatalf("good reload: exit %d, %q %q", code, out, errs)
	}
	if g := status(t, ctx, l2.Router).Generation; g != 1 {
		t.Errorf("lab 2's daemon reloaded with lab 1's (generation %d)", g)
	}
	if res := connect(ctx, l1.Client, l1.Server.Addr4, 24, time.Second); res.Outcome != lab.TimedOut {
		t.Errorf("lab 1 after reload: port 24 %v, want dropped", res)
	}

	// A broken plugin: exit non-zero, file:line on stderr, the old set runs.
	writeFiles(t, d1.dir, map[string]string{"p.lua": "fw.register{hook='forward', fn=function(pkt)\n  return fw.DROP\n"})
	code, out, errs = luafwIn(t, ctx, l1.Router, "reload")
	if code != 1 || !strings.Contains(errs, filepath.Join(d1.dir, "p.lua")+":3:") || out != "" {
		t.Errorf("broken reload: exit %d, stdout %q, stderr %q: want 1 and p.lua:3", code, out, errs)
	}
	st1 = status(t, ctx, l1.Router)
	if st1.Generation != 2 || st1.Reloads.OK != 1 || st1.Reloads.Failed != 1 || !strings.Contains(st1.Reloads.LastError, "p.lua:3:") {
		t.Errorf("after the broken reload: generation %d, reloads %+v", st1.Generation, st1.Reloads)
	}
	if res := connect(ctx, l1.Client, l1.Server.Addr4, 24, time.Second); res.Outcome != lab.TimedOut {
		t.Errorf("after a failed reload: port 24 %v, want still dropped", res)
	}
	if res := connect(ctx, l1.Client, l1.Server.Addr4, 23, 2*time.Second); res.Outcome != lab.Connected {
		t.Errorf("after a failed reload: port 23 %v, want connected", res)
	}

	// No daemon in the client namespace: said, and a distinct exit code.
	code, _, errs = luafwIn(t, ctx, l1.Client, "reload")
	if code != 3 || !strings.Contains(errs, "no luafw daemon answers") {
		t.Errorf("reload without a daemon: exit %d, %q", code, errs)
	}

	// A second daemon in lab 2's namespace refuses to start, and leaves the
	// running one's pidfile, socket and rules alone.
	pid2, _ := os.ReadFile(d2.pidfile)
	code, _, errs = luafwIn(t, ctx, l2.Router, "run", "--config", filepath.Join(d2.dir, "luafw.yaml"), "--pidfile", d2.pidfile)
	if code != 4 {
		t.Errorf("a second daemon in one namespace: exit %d, want 4 (another instance holds the lock): %s", code, errs)
	}
	if now, _ := os.ReadFile(d2.pidfile); string(now) != string(pid2) {
		t.Errorf("the second daemon changed the pidfile: %q, was %q", now, pid2)
	}
	if res := connect(ctx, l2.Client, l2.Server.Addr4, 24, time.Second); res.Outcome != lab.TimedOut {
		t.Errorf("lab 2 after a second daemon tried to start: port 24 %v, want still dropped", res)
	}

	// SIGTERM removes the socket; the other daemon is untouched.
	d1.stop()
	for _, f := range []string{luafwd.PathsFor(luafwd.DefaultRunDir, l1.Router.Inode()).Socket, d1.pidfile} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s left after SIGTERM: %v", f, err)
		}
	}
	if g := status(t, ctx, l2.Router).Generation; g != 1 {
		t.Errorf("lab 2 after lab 1 stopped: generation %d", g)
	}
}

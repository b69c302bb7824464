package tests

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	luafwd "github.com/luafw/luafw/daemon"
	"github.com/luafw/luafw/tests/lab"
)

// The plugins of the trace tests: one that marks and tags everything, one
// that drops telnet.
var traceFiles = map[string]string{
	"luafw.yaml": "plugins:\n  - file: marker.lua\n  - file: telnetguard.lua\n",
	"marker.lua": `fw.register{name="mark-all", hook="forward", priority=-10, fn=function(pkt)
	pkt:set_mark(0x20, 0xf0)
	pkt:tag("seen")
end}`,
	"telnetguard.lua": `fw.register{name="no-telnet", hook="forward", fn=function(pkt)
	if pkt.proto == "tcp" and pkt.dport == 23 then return fw.DROP end
end}`,
}

// traceProc is a `luafw trace` running in the background.
type traceProc struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuf
	done           chan struct{}
	code           int
}

// startTrace runs luafw trace in ns and waits until the daemon has attached
// it. stdout, when not nil, replaces the collected output (a pipe nobody
// reads, for a stuck client).
func startTrace(t *testing.T, ctx context.Context, d *daemon, stdout io.Writer, args ...string) *traceProc {
	t.Helper()
	attached := strings.Count(d.logs.String(), "trace attached")
	cmd, err := d.ns.Command(ctx, luafwBinary(t), append([]string{"trace"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	p := &traceProc{cmd: cmd, stdout: &syncBuf{}, stderr: &syncBuf{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if stdout != nil {
		cmd.Stdout = stdout
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		cmd.Wait()
		p.code = cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
	})
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(d.logs.String(), "trace attached") == attached {
		select {
		case <-p.done:
			t.Fatalf("luafw trace %v exited (%d) before attaching: %s", args, p.code, p.stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("luafw trace %v did not attach", args)
		}
	}
	return p
}

// wait waits for the trace to end and returns its packets.
func (p *traceProc) wait(t *testing.T, timeout time.Duration) []luafwd.TracePacket {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("luafw trace did not end within %v; stderr: %s", timeout, p.stderr)
	}
	if p.code != 0 {
		t.Fatalf("luafw trace: exit %d: %s", p.code, p.stderr)
	}
	return parseTrace(t, p.stdout.String())
}

func parseTrace(t *testing.T, out string) []luafwd.TracePacket {
	t.Helper()
	var pkts []luafwd.TracePacket
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var p luafwd.TracePacket
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			t.Fatalf("trace line %q: %v", sc.Text(), err)
		}
		pkts = append(pkts, p)
	}
	return pkts
}

// TestTraceShowsWhoDropped: a trace filtered by a Lua expression shows the
// callback that dropped a telnet connection, with everything that ran.
func TestTraceShowsWhoDropped(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 120*time.Second)
	d := startDaemon(t, l.Router, traceFiles)
	serveTCP(t, l.Server, 23, 80)

	// The plugins run in two diversions of the forward hook (the marker
	// before the filter stage, the guard after it): a packet shows up once
	// per diversion.
	tr := startTrace(t, ctx, d, nil, "--json", "-n", "2", "--for", "30s", `pkt.dport == 23 and pkt.proto == "tcp"`)
	if res := connect(ctx, l.Client, l.Server.Addr4, 80, 2*time.Second); res.Outcome != lab.Connected {
		t.Fatalf("port 80: %v", res)
	}
	if res := connect(ctx, l.Client, l.Server.Addr4, 23, time.Second); res.Outcome != lab.TimedOut {
		t.Fatalf("port 23: %v, want dropped", res)
	}
	pkts := tr.wait(t, 40*time.Second)
	if len(pkts) != 2 {
		t.Fatalf("%d packets, want 2 (-n 2)", len(pkts))
	}
	for _, p := range pkts {
		if p.Hook != "forward" || p.Proto != "tcp" || p.DPort != 23 || p.SPort == 0 ||
			p.Src != l.Client.Addr4.String() || p.Dst != l.Server.Addr4.String() || p.Segment == "" || len(p.Callbacks) != 1 {
			t.Errorf("packet fields: %+v", p)
		}
	}
	first, second := pkts[0], pkts[1]
	if first.Segment == second.Segment || first.SPort != second.SPort {
		t.Errorf("not one packet through two segments: %+v %+v", first, second)
	}
	if m := first.Callbacks[0]; m.Plugin != "marker" || m.Name != "mark-all" || m.Verdict != "accept" || m.Mark == nil ||
		*m.Mark&0xf0 != 0x20 || len(m.Tagged) != 1 || m.Tagged[0] != "seen" {
		t.Errorf("first callback %+v", m)
	}
	if first.Verdict != "accept" || first.Kernel.Verdict != "accept" || first.Kernel.Mark == nil || *first.Kernel.Mark&0xf0 != 0x20 {
		t.Errorf("first segment's outcome: %s, kernel %s %v", first.Verdict, first.Kernel.Verdict, first.Kernel.Mark)
	}
	if g := second.Callbacks[0]; g.Plugin != "telnetguard" || g.Name != "no-telnet" || g.Verdict != "drop" || g.Mark != nil {
		t.Errorf("second callback %+v", g)
	}
	if second.Verdict != "drop" || second.By != "telnetguard" || second.ByName != "no-telnet" || second.Kernel.Verdict != "drop" {
		t.Errorf("outcome: verdict %q by %s/%s, kernel %+v", second.Verdict, second.By, second.ByName, second.Kernel)
	}
	if !strings.Contains(tr.stderr.String(), "trace ended (count): 2 shown") {
		t.Errorf("summary: %s", tr.stderr)
	}

	// The same, for people.
	code, out, errs := luafwIn(t, ctx, l.Router, "trace", "--for", "1s", "--port", "23")
	if code != 0 || !strings.Contains(errs, "trace ended (time): 0 shown") {
		t.Errorf("an idle trace: exit %d, %q %q", code, out, errs)
	}
}

// TestTraceFlagsAndBounds: plain-flag filters, the -n and --for bounds, a
// failing Lua filter, one trace at a time.
func TestTraceFlagsAndBounds(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 120*time.Second)
	d := startDaemon(t, l.Router, traceFiles)
	serveTCP(t, l.Server, 23)
	sink, err := l.Server.ServeUDP(":7000")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()

	tr := startTrace(t, ctx, d, nil, "--json", "-n", "3", "--proto", "udp", "--dst", l.Server.Addr4.String()+"/32",
		"--src", l.Client.Addr4.String(), "--port", "7000", "--hook", "forward", "--plugin", "telnetguard", "--verdict", "accept,stop")
	if code, _, errs := luafwIn(t, ctx, l.Router, "trace", "--for", "1s"); code != 1 || !strings.Contains(errs, "one runs at a time") {
		t.Errorf("a second trace: exit %d: %s", code, errs)
	}
	connect(ctx, l.Client, l.Server.Addr4, 23, 500*time.Millisecond)
	if _, err := l.Client.UDPFlood(ctx, l.Server.Addr4.String()+":7000", 20, 32, 200); err != nil {
		t.Fatal(err)
	}
	pkts := tr.wait(t, 40*time.Second)
	if len(pkts) != 3 {
		t.Fatalf("%d packets, want 3 (-n 3)", len(pkts))
	}
	for _, p := range pkts {
		if p.Proto != "udp" || p.DPort != 7000 || p.Verdict != "accept" || p.Kernel.Verdict != "accept" || p.Hook != "forward" {
			t.Errorf("a packet the flags exclude: %+v", p)
		}
	}

	// A filter that fails matches nothing, and says so; --for ends it.
	tr = startTrace(t, ctx, d, nil, "--json", "--for", "3s", `pkt["nosuch" .. "field"] == 1`) // computed: pkt.nosuchfield is refused at attach
	if _, err := l.Client.UDPFlood(ctx, l.Server.Addr4.String()+":7000", 20, 32, 200); err != nil {
		t.Fatal(err)
	}
	if pkts := tr.wait(t, 40*time.Second); len(pkts) != 0 {
		t.Errorf("a failing filter matched %d packets", len(pkts))
	}
	errs := tr.stderr.String()
	if !strings.Contains(errs, "the filter failed on them") || !strings.Contains(errs, "trace ended (time): 0 shown") ||
		strings.Contains(errs, " 0 filter errors") {
		t.Errorf("stderr of a failing filter: %s", errs)
	}

	// Ctrl-C detaches at once, and cleanly: the next trace attaches.
	tr = startTrace(t, ctx, d, nil, "--for", "60s", "--port", "7000")
	tr.cmd.Process.Signal(syscall.SIGINT)
	tr.wait(t, 10*time.Second)
	if !strings.Contains(tr.stderr.String(), "trace detached") {
		t.Errorf("after Ctrl-C: %s", tr.stderr)
	}
	tr = startTrace(t, ctx, d, nil, "--for", "1s")
	tr.wait(t, 20*time.Second)

	// A filter that does not compile is refused at once.
	if code, _, errs := luafwIn(t, ctx, l.Router, "trace", "pkt.dport =="); code != 1 || !strings.Contains(errs, "trace filter") {
		t.Errorf("a syntax error: exit %d: %s", code, errs)
	}
}

// TestTraceStuckReader: a trace client that does not read loses trace lines
// (and says how many) while the firewall keeps passing and dropping traffic.
func TestTraceStuckReader(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 120*time.Second)
	d := startDaemon(t, l.Router, traceFiles)
	serveTCP(t, l.Server, 23, 80)
	sink, err := l.Server.ServeUDP(":7000")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()

	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	tr := startTrace(t, ctx, d, pw, "--json", "-n", "1000000", "--for", "8s", "--port", "7000")
	pw.Close() // the child has it

	const n = 20000
	sent, err := l.Client.UDPFlood(ctx, l.Server.Addr4.String()+":7000", n, 200, 5000)
	if err != nil {
		t.Fatal(err)
	}
	if res := connect(ctx, l.Client, l.Server.Addr4, 80, 2*time.Second); res.Outcome != lab.Connected {
		t.Errorf("port 80 with a stuck trace: %v", res)
	}
	if res := connect(ctx, l.Client, l.Server.Addr4, 23, time.Second); res.Outcome != lab.TimedOut {
		t.Errorf("port 23 with a stuck trace: %v, want dropped", res)
	}
	time.Sleep(200 * time.Millisecond)
	if got := sink.Count(); got < int64(sent)*9/10 {
		t.Errorf("with a stuck trace reader %d of %d packets arrived", got, sent)
	}

	// Now read: the lines that fit in the buffers, then the loss report.
	shown := 0
	sc := bufio.NewScanner(pr)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		shown++
	}
	<-tr.done
	errs := tr.stderr.String()
	lost := 0
	for _, line := range strings.Split(errs, "\n") {
		var k int
		if _, err := fmt.Sscanf(line, "… %d trace lines lost: reader too slow", &k); err == nil {
			lost += k
		}
	}
	t.Logf("%d sent, %d arrived, %d trace lines shown, %d lost; %s", sent, sink.Count(), shown, lost, errs)
	// Each packet passes two diversions, each traced.
	if lost == 0 || shown == 0 || shown+lost > 2*n+100 {
		t.Errorf("shown %d, lost %d of %d; stderr: %s", shown, lost, n, errs)
	}
	if !strings.Contains(errs, "lost,") && !strings.Contains(errs, "lost: reader") {
		t.Errorf("no loss reported: %s", errs)
	}
}

// TestTopOneShot: luafw top without a terminal prints one view, with the
// plugins and rates that match the traffic sent.
func TestTopOneShot(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 120*time.Second)
	startDaemon(t, l.Router, traceFiles)
	sink, err := l.Server.ServeUDP(":7000")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	flood := make(chan error, 1)
	go func() {
		_, err := l.Client.UDPFlood(ctx, l.Server.Addr4.String()+":7000", 4000, 32, 1000)
		flood <- err
	}()
	time.Sleep(500 * time.Millisecond)
	code, out, errs := luafwIn(t, ctx, l.Router, "top")
	if err := <-flood; err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Fatalf("luafw top: exit %d: %s", code, errs)
	}
	t.Logf("luafw top:\n%s", out)
	if strings.Contains(out, "\x1b[") {
		t.Error("escape sequences without a terminal")
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 12 && (f[0] == "marker" || f[0] == "telnetguard") {
			rows[f[0]+"/"+f[1]] = f
		}
	}
	for _, cb := range []string{"marker/mark-all", "telnetguard/no-telnet"} {
		f, ok := rows[cb]
		if !ok {
			t.Fatalf("no row for %s", cb)
		}
		// 1000 packets/s are sent: allow for a slow machine, not for
		// nonsense.
		calls, err := strconv.ParseFloat(f[4], 64)
		if err != nil || calls < 100 || calls > 5000 || f[2] != "forward" || f[11] != "ok" {
			t.Errorf("%s: %v (calls/s %v)", cb, f, err)
		}
	}
	if !strings.Contains(out, "SEGMENT") || !strings.Contains(out, "forward@") || !strings.Contains(out, "verdicts/s") {
		t.Errorf("no segment table or totals:\n%s", out)
	}
}

// TestTopTerminal: on a terminal (a pseudo-terminal made by script(1)) luafw
// top redraws in place until q is pressed.
func TestTopTerminal(t *testing.T) {
	script, err := exec.LookPath("script")
	if err != nil {
		t.Skip("script(1) (util-linux) is not installed")
	}
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 60*time.Second)
	startDaemon(t, l.Router, traceFiles)
	cmd, err := l.Router.Command(ctx, script, "-qfec", luafwBinary(t)+" top --interval 200ms", "/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuf
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(out.String(), "\x1b[H\x1b[2J") < 3 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	in.Write([]byte("q"))
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("luafw top: %v\n%s", err, out.String())
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("q did not quit luafw top:\n%q", out.String())
	}
	if n := strings.Count(out.String(), "\x1b[H\x1b[2J"); n < 3 || !strings.Contains(out.String(), "telnetguard") ||
		!strings.Contains(out.String(), "(q quits)") {
		t.Errorf("%d redraws:\n%q", n, out.String())
	}
}

package tests

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/luafw/luafw/tests/lab"
)

// The hostile tests on the live daemon: crafted packets through the lab's
// router, where luafw runs honest and hostile plugins with a 2 ms budget.

const (
	daemonOrdinary  = 400 // ordinary datagrams, to port 7000
	daemonCraftedAt = 10  // every 10th datagram is crafted, to port 6666
)

// TestHostileDaemon: an honest plugin whose pattern meets crafted payloads,
// under traffic, costs only those packets their on_error verdict (drop):
// every ordinary datagram arrives, none of the crafted ones do, the metrics
// count a timeout per crafted datagram, the daemon's peak RSS stays
// bounded and SIGTERM still cleans up. A second, memory-hungry plugin
// tries to build huge strings and fill a shared map on datagrams of its
// own.
func TestHostileDaemon(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 90*time.Second)
	pattern, err := os.ReadFile("testdata/hostile/pattern.lua")
	if err != nil {
		t.Fatal(err)
	}
	// The pattern plugin runs first and drops the crafted payloads; the
	// "hungry" datagrams pass it and reach the memory-hungry plugin.
	hungry := memoryHungry(readTemplate(t))
	cfg := `budget: 2ms
plugins:
  - file: pattern.lua
    on_error: drop
    budget: 2ms
    options: {fn: find, pattern: "a*a*a*a*b"}
  - file: hungry.lua
    on_error: drop
    budget: 2ms
`
	files := map[string]string{"pattern.lua": string(pattern), "hungry.lua": hungry, "luafw.yaml": cfg}
	d := startDaemon(t, l.Router, files, "--metrics", "127.0.0.1:0")
	pid := daemonPid(t, d)

	ordinarySink := udpSink(t, l.Server, 7000)
	craftedSink := udpSink(t, l.Server, hostilePort)

	start := time.Now()
	crafted, hungrySent := sendInterleaved(t, ctx, l)
	// The last datagram is ordinary and one queue keeps the order: once
	// every ordinary datagram is in, every crafted one has been decided.
	waitCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	waitErr := ordinarySink.WaitCount(waitCtx, daemonOrdinary)
	elapsed := time.Since(start)
	m := scrape(t, d)
	timeouts := pluginFailures(m, "pattern", "timeout")
	hungryFailed := pluginFailures(m, "hungry", "timeout", "error")
	t.Logf("%d ordinary and %d crafted datagrams (%d for the hungry plugin) in %v: %d ordinary arrived, %d crafted arrived; pattern timeouts %v, hungry failures %v",
		daemonOrdinary, crafted, hungrySent, elapsed.Round(time.Millisecond), ordinarySink.Count(), craftedSink.Count(), timeouts, hungryFailed)
	if n := craftedSink.Count(); n != 0 {
		t.Errorf("%d crafted datagrams arrived, want none (on_error drop)", n)
	}
	if timeouts < float64(crafted) {
		t.Errorf("metrics count %v pattern timeouts, want at least %d (one per crafted datagram)", timeouts, crafted)
	}
	if hungryFailed < float64(hungrySent) {
		t.Errorf("metrics count %v failures of the hungry plugin, want at least %d", hungryFailed, hungrySent)
	}
	checkLost(t, float64(daemonOrdinary-ordinarySink.Count()), timeouts-float64(crafted)+hungryFailed-float64(hungrySent), waitErr)
	select {
	case <-d.done:
		t.Fatalf("the daemon exited during the traffic (%v)", d.err)
	default:
	}
	checkDaemonPeak(t, pid)
	d.stop()
	if left := ourRules(t, ctx, l.Router); left != "" {
		t.Errorf("SIGTERM left rules of ours:\n%s", left)
	}
}

// memoryHungry is a plugin that tries to grow the daemon's memory on every
// packet that reaches it at port 6666: a gsub whose table replacement
// would build 1 MiB per byte of payload, then 60 KiB values into a shared
// state map for as long as its budget lets it.
func memoryHungry(template string) string {
	return fillTemplate(template, `local m = state.map("hungry")
local n = 0
local big = {h = string.rep("h", 1024 * 1024)}`, `pcall(string.gsub, pkt.payload, ".", big)
for i = 1, 1e7 do
  n = n + 1
  m:set("k" .. n, string.rep(pkt.payload, 10000))
end`)
}

// sendInterleaved sends daemonOrdinary datagrams to the server's port
// 7000 and, before every daemonCraftedAt-th, a crafted one to port 6666:
// alternately 400 bytes of 'a' (for the pattern) and a datagram for the
// memory-hungry plugin. It returns how many of each it sent.
func sendInterleaved(t *testing.T, ctx context.Context, l *lab.Lab) (crafted, hungrySent int) {
	t.Helper()
	ord, bad := udpTo(t, ctx, l, 7000), udpTo(t, ctx, l, hostilePort)
	for i := 0; i < daemonOrdinary; i++ {
		if i%daemonCraftedAt == daemonCraftedAt-1 {
			payload := payloadA
			if (i/daemonCraftedAt)%2 == 1 {
				payload = []byte("hungry")
				hungrySent++
			} else {
				crafted++
			}
			if _, err := bad.Write(payload); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := ord.Write([]byte("hello " + strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Microsecond)
	}
	return crafted, hungrySent
}

// daemonPid reads the running daemon's pid from its pidfile.
func daemonPid(t *testing.T, d *daemon) int {
	t.Helper()
	b, err := os.ReadFile(d.pidfile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pidfile %s: %v", d.pidfile, err)
	}
	return pid
}

// TestHostileDaemonLoad: luafw run refuses to start with a plugin that
// loads a file out of bounds (with the same error as for a missing file,
// and nothing of the file in it) or whose top level is hostile (runs too
// long, keeps or builds too much), soon, with a bounded peak RSS and none
// of its rules left behind.
func TestHostileDaemonLoad(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 90*time.Second)
	dir := fileBoundaryDir(t)
	writeFiles(t, dir, map[string]string{"luafw.yaml": "plugins:\n  - file: hostile.lua\n"})
	run := func(plugin string) string {
		writeFiles(t, dir, map[string]string{"hostile.lua": plugin})
		cmd, err := l.Router.Command(ctx, luafwBinary(t), "run", "--config", filepath.Join(dir, "luafw.yaml"), "--pidfile", filepath.Join(dir, "luafw.pid"))
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		start := time.Now()
		if err := cmd.Run(); err == nil {
			t.Fatalf("luafw run started with:\n%s", plugin)
		}
		peak, err := peakRSS(cmd.ProcessState)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("luafw run failed after %v, peak RSS %d MiB", time.Since(start).Round(time.Millisecond), peak>>10)
		if peak > hostilePeakKiB {
			t.Errorf("peak RSS %d MiB, want at most %d MiB", peak>>10, hostilePeakKiB>>10)
		}
		return out.String()
	}
	for _, p := range fileProbes() {
		if p.name != "absolute-shadow" && p.name != "dotdot" && p.name != "symlink-file" {
			continue
		}
		t.Run(p.name, func(t *testing.T) {
			out := run(netLoadPlugin(p.path))
			checkNoSecrets(t, out, secretsOf(t, p.path, "no canary: the daemon's environment is the test's"))
			got, want := runError(out, dir, p.path), runError(run(netLoadPlugin(p.missing)), dir, p.missing)
			if got != want {
				t.Errorf("an existing file out of bounds and a missing one fail differently:\n  %s\n  %s", got, want)
			}
			t.Logf("%s", got)
		})
	}
	for _, c := range loadCases() {
		if c.name != "pattern" && c.name != "keep" && c.name != "doubling" {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			out := run(c.top + "\nfw.register{hook = \"forward\", fn = function(pkt) end}\n")
			if !strings.Contains(out, c.want) {
				t.Errorf("the error does not say %q:\n%s", c.want, firstLines(out, 10))
			}
			t.Logf("%s", runError(out, dir, "hostile.lua"))
		})
	}
	if left := ourRules(t, ctx, l.Router); left != "" {
		t.Errorf("a failed start left rules of ours:\n%s", left)
	}
}

// runError is the line of luafw run's output that names the failed load,
// with the path replaced (normalizePath).
func runError(out, dir, path string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "hostile.lua") {
			return normalizePath(l, dir, path)
		}
	}
	return "(no line names hostile.lua)"
}

// TestHostileDaemonMemory: a plugin that keeps what it allocates (an
// upvalue grown by every packet to port 6666) goes over its memory limit on
// the live daemon: it is quarantined and its Lua states rebuilt, the
// packets it sees meanwhile get its on_error verdict (and only those: the
// metrics count them), the daemon's peak RSS stays bounded, and once the
// quarantine is over ordinary traffic flows again.
func TestHostileDaemonMemory(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 60*time.Second)
	grow := fillTemplate(readTemplate(t), "local keep = {}",
		"for i = 1, 1e7 do keep[#keep + 1] = string.rep(pkt.payload .. i, 100000) end")
	d := startDaemon(t, l.Router, map[string]string{
		"luafw.yaml": `budget: 2ms
memory_check: 50ms
plugins:
  - file: grow.lua
    on_error: drop
    budget: 2ms
    memory: 16MiB
    quarantine_for: 100ms
`,
		"grow.lua": grow,
	}, "--metrics", "127.0.0.1:0")
	pid := daemonPid(t, d)
	ordinarySink := udpSink(t, l.Server, 7000)
	growSink := udpSink(t, l.Server, hostilePort)
	ord, bad := udpTo(t, ctx, l, 7000), udpTo(t, ctx, l, hostilePort)
	send := func(c net.Conn, payload string) {
		t.Helper()
		if _, err := c.Write([]byte(payload)); err != nil {
			t.Fatal(err)
		}
	}
	const first, grows = 300, 30
	for i := 0; i < first; i++ {
		if i%(first/grows) == 0 {
			send(bad, "grow")
		}
		send(ord, "hello "+strconv.Itoa(i))
		time.Sleep(500 * time.Microsecond)
	}
	// A worker measures its states between two packets, and after a long
	// walk not again for 100 times the walk's duration: what phase one kept
	// may be found over the limit only at a later packet, and the plugin is
	// then quarantined for 100 ms. Probes on a port of their own go on
	// until ten in a row pass: the plugin runs again with fresh states.
	probeSink := udpSink(t, l.Server, 7002)
	prb := udpTo(t, ctx, l, 7002)
	probes, streak := 0, 0
	for deadline := time.Now().Add(10 * time.Second); streak < 10; probes++ {
		if time.Now().After(deadline) {
			t.Fatalf("the plugin never passed 10 probes in a row after its quarantine (%d sent, %d arrived)", probes, probeSink.Count())
		}
		before := probeSink.Count()
		send(prb, "probe "+strconv.Itoa(probes))
		time.Sleep(20 * time.Millisecond)
		if probeSink.Count() > before {
			streak++
		} else {
			streak = 0
		}
	}
	afterSink := udpSink(t, l.Server, 7001)
	aft := udpTo(t, ctx, l, 7001)
	const after = 50
	for i := 0; i < after; i++ {
		send(aft, "after "+strconv.Itoa(i))
		time.Sleep(500 * time.Microsecond)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := afterSink.WaitCount(waitCtx, after); err != nil {
		t.Errorf("after the quarantine: %v", err)
	}
	waitSettled(ctx, ordinarySink)
	arrived := ordinarySink.Count()
	m := scrape(t, d)
	quarantined, failed := pluginFailures(m, "grow", "quarantined"), pluginFailures(m, "grow", "timeout", "error")
	lost := float64(first - arrived)
	t.Logf("%d ordinary (and %d probes) and %d growing datagrams: %v ordinary lost, %d growing arrived; failures: %v quarantined, %v timeouts or errors",
		first, probes, grows, lost, growSink.Count(), quarantined, failed)
	if n := growSink.Count(); n != 0 {
		t.Errorf("%d growing datagrams arrived, want none (on_error drop)", n)
	}
	if !strings.Contains(d.logs.String(), "plugin over its memory limit") {
		t.Errorf("the plugin never went over its memory limit (16 MiB)")
	}
	checkLost(t, lost, quarantined+max(0, failed-grows), nil)
	checkDaemonPeak(t, pid)
	d.stop()
}

// waitSettled waits until sink's count has not changed for 200 ms (or ctx
// ends).
func waitSettled(ctx context.Context, sink *lab.UDPSink) {
	last, since := sink.Count(), time.Now()
	for ctx.Err() == nil && time.Since(since) < 200*time.Millisecond {
		time.Sleep(10 * time.Millisecond)
		if n := sink.Count(); n != last {
			last, since = n, time.Now()
		}
	}
}

// TestHostileDaemonClasses runs the replay's hostile plugins (those the
// sandbox must cut off, each on a port of its own) together in the live
// daemon, under ordinary traffic: every ordinary datagram arrives, none of
// the hostile ones do, the metrics count a failure of each plugin per
// datagram sent to its port, and the daemon's peak RSS stays bounded.
// Plugins that may finish (mayFinish), that get quarantined, and the
// honest pattern plugins (which read every payload) are left to the
// replay and to the tests above.
func TestHostileDaemonClasses(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 90*time.Second)
	files, targets := classTargets(t, l)
	d := startDaemon(t, l.Router, files, "--metrics", "127.0.0.1:0")
	pid := daemonPid(t, d)
	ordinarySink := udpSink(t, l.Server, 7000)
	ord := udpTo(t, ctx, l, 7000)
	const perTarget = 2
	ordinary := 0
	for round := 0; round < perTarget; round++ {
		for _, tg := range targets {
			if _, err := tg.conn.Write(tg.payload); err != nil {
				t.Fatal(err)
			}
			for k := 0; k < 5; k++ {
				if _, err := ord.Write([]byte("hello " + strconv.Itoa(ordinary))); err != nil {
					t.Fatal(err)
				}
				ordinary++
				time.Sleep(500 * time.Microsecond)
			}
		}
	}
	waitCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	waitErr := ordinarySink.WaitCount(waitCtx, int64(ordinary))
	m := scrape(t, d)
	var extra float64
	for _, tg := range targets {
		// A call allocating fast may be cut by the process's memory
		// ceiling (fast growth) rather than its budget: a failure too.
		failed := pluginFailures(m, tg.plugin, "timeout", "error", "memory")
		if n := tg.sink.Count(); n != 0 {
			t.Errorf("%s: %d hostile datagrams arrived, want none", tg.name, n)
		}
		if failed < perTarget {
			t.Errorf("%s: metrics count %v failures, want at least %d", tg.name, failed, perTarget)
		}
		extra += failed - perTarget
	}
	t.Logf("%d hostile plugins, %d hostile and %d ordinary datagrams", len(targets), perTarget*len(targets), ordinary)
	checkLost(t, float64(ordinary)-float64(ordinarySink.Count()), extra, waitErr)
	checkDaemonPeak(t, pid)
	d.stop()
}

// classTarget is one hostile plugin of TestHostileDaemonClasses.
type classTarget struct {
	name, plugin string
	payload      []byte
	sink         *lab.UDPSink // at its port
	conn         net.Conn     // to its port
}

// classTargets makes the plugins and configuration of
// TestHostileDaemonClasses: one plugin per hostile case that must be cut,
// on ports from 6700.
func classTargets(t *testing.T, l *lab.Lab) (map[string]string, []classTarget) {
	t.Helper()
	template := readTemplate(t)
	files := map[string]string{}
	cfg := "budget: 2ms\nplugins:\n"
	var targets []classTarget
	for _, c := range hostileCases() {
		if c.pattern != "" || c.mayFinish || c.quarantines {
			continue
		}
		port := uint16(6700 + len(targets))
		name := "c" + strconv.Itoa(int(port))
		files[name+".lua"] = fillTemplate(template, c.setup, c.code)
		cfg += fmt.Sprintf("  - {file: %s.lua, on_error: drop, budget: 2ms, options: {port: %d}}\n", name, port)
		payload := c.payload
		if payload == nil {
			payload = payloadA
		}
		targets = append(targets, classTarget{name: c.name, plugin: name, payload: payload,
			sink: udpSink(t, l.Server, port), conn: udpTo(t, context.Background(), l, port)})
		t.Logf("plugin %s: %s", name, c.name)
	}
	files["luafw.yaml"] = cfg
	return files, targets
}

// pluginFailures sums a plugin's callback failures of the given reasons in
// a metrics scrape.
func pluginFailures(metrics, plugin string, reasons ...string) float64 {
	var sum float64
	for _, r := range reasons {
		sum += max(0, metricValue(metrics, fmt.Sprintf(`luafw_callback_failures_total{callback=%q,hook="forward",plugin=%q,reason=%q}`, plugin, plugin, r)))
	}
	return sum
}

// checkLost checks that the ordinary datagrams lost are no more than the
// failures beyond the hostile ones explain: a wall-clock budget can also
// cut an ordinary call short on a busy machine (or a quarantine can cost
// it), and such a packet is dropped and counted too.
func checkLost(t *testing.T, lost, explained float64, waitErr error) {
	t.Helper()
	if lost > explained {
		t.Errorf("%v ordinary datagrams lost, more than the %v extra failures explain (%v)", lost, explained, waitErr)
	} else if lost > 0 {
		t.Logf("%v ordinary datagrams lost to quarantine or budget cuts on a busy machine", lost)
	}
}

// udpSink counts the datagrams that reach port in ns, until the test ends.
func udpSink(t *testing.T, ns *lab.NS, port uint16) *lab.UDPSink {
	t.Helper()
	s, err := ns.ServeUDP(fmt.Sprintf(":%d", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// udpTo is a UDP socket from the lab's client to the server's port.
func udpTo(t *testing.T, ctx context.Context, l *lab.Lab, port uint16) net.Conn {
	t.Helper()
	c, err := l.Client.Dial(ctx, "udp", netip.AddrPortFrom(l.Server.Addr4, port).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// checkDaemonPeak checks the running daemon's peak RSS (VmHWM) against
// hostilePeakKiB.
func checkDaemonPeak(t *testing.T, pid int) {
	t.Helper()
	peak, err := vmHWM(pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("daemon peak RSS (VmHWM) %d MiB", peak>>10)
	if peak > hostilePeakKiB {
		t.Errorf("daemon peak RSS %d MiB, want at most %d MiB", peak>>10, hostilePeakKiB>>10)
	}
}

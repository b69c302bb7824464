package tests

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/luafw/luafw/tests/lab"
)

// queuedTotal is how many packets the router's queues have taken so far.
func queuedTotal(t *testing.T, ns *lab.NS) int {
	taken, _ := kernelQueues(t, ns)
	n := 0
	for _, c := range taken {
		n += c
	}
	return n
}

// TestMatchesNarrowDiversion: with every callback declaring a match, traffic
// no match admits never reaches a queue (the kernel's queue counters stay
// at zero), while matched traffic is decided by the plugin. The same holds
// after a reload that changes the match, and --dry-run shows the rule.
func TestMatchesNarrowDiversion(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 90*time.Second)
	files := map[string]string{
		"luafw.yaml": "plugins:\n  - file: guard.lua\n",
		"guard.lua": `fw.register{hook="forward", match={proto="tcp", dport=5010, ct_state="new"},
			fn=function(pkt) return fw.REJECT end}`,
	}
	d := startDaemon(t, l.Router, files)
	serveTCP(t, l.Server, 5010, 5011, 5012)
	sink, err := l.Server.ServeUDP(":9200")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()

	const n = 200
	if sent, err := l.Client.UDPFlood(ctx, fmt.Sprintf("%s:9200", l.Server.Addr4), n, 64, 0); err != nil || sent != n {
		t.Fatalf("flood: sent %d, %v", sent, err)
	}
	if err := sink.WaitCount(ctx, n); err != nil {
		t.Fatal(err)
	}
	if res := connect(ctx, l.Client, l.Server.Addr4, 5011, 3*time.Second); res.Outcome != lab.Connected {
		t.Fatalf("connect to 5011 (no callback wants it): %v", res)
	}
	if q := queuedTotal(t, l.Router); q != 0 {
		t.Fatalf("%d packets queued for traffic no callback wants", q)
	}
	if res := connect(ctx, l.Client, l.Server.Addr6, 5010, 3*time.Second); res.Outcome != lab.Refused {
		t.Fatalf("connect to 5010: %v, want refused by the plugin", res)
	}
	if q := queuedTotal(t, l.Router); q != 1 {
		t.Fatalf("%d packets queued, want 1 (the SYN to 5010)", q)
	}

	// A reload moves the guard to 5012: 5010 is no longer diverted.
	files["guard.lua"] = strings.Replace(files["guard.lua"], "5010", "5012", 1)
	writeFiles(t, d.dir, files)
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	d.waitLog("msg=reloaded", 20*time.Second)
	if res := connect(ctx, l.Client, l.Server.Addr4, 5010, 3*time.Second); res.Outcome != lab.Connected {
		t.Fatalf("after reload, connect to 5010: %v", res)
	}
	if res := connect(ctx, l.Client, l.Server.Addr4, 5012, 3*time.Second); res.Outcome != lab.Refused {
		t.Fatalf("after reload, connect to 5012: %v, want refused", res)
	}
	if q := queuedTotal(t, l.Router); q != 2 {
		t.Fatalf("%d packets queued, want 2 (one SYN before the reload, one after)", q)
	}

	// A callback without a match brings back the whole hook (and the
	// narrowing chains go).
	files["guard.lua"] += `
fw.register{hook="forward", fn=function(pkt) end}`
	writeFiles(t, d.dir, files)
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLogCount(t, d, "msg=reloaded", 2, 20*time.Second)
	if sent, err := l.Client.UDPFlood(ctx, fmt.Sprintf("%s:9200", l.Server.Addr4), n, 64, 0); err != nil || sent != n {
		t.Fatalf("flood: sent %d, %v", sent, err)
	}
	if err := sink.WaitCount(ctx, 2*n); err != nil {
		t.Fatal(err)
	}
	if q := queuedTotal(t, l.Router); q < 2+n {
		t.Fatalf("%d packets queued, want the %d of the flood besides the 2 SYNs", q, n)
	}
	if out, err := l.Router.Run(ctx, "nft", "list", "ruleset"); err != nil || strings.Contains(out, "chain div_forward_1_ct") || !strings.Contains(out, `queue num 1000 bypass comment "luafw div 0 new"`) {
		t.Errorf("after the reload the forward diversion should queue from its base chain, the narrowing chain gone (%v):\n%s", err, out)
	}
}

// waitLogCount waits until the daemon's log has n lines with s.
func waitLogCount(t *testing.T, d *daemon, s string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for strings.Count(d.logs.String(), s) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d log lines with %q after %v:\n%s", strings.Count(d.logs.String(), s), n, s, timeout, d.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMatchesDryRun: --dry-run shows each match as a rule of its
// diversion, and a callback without a match keeps the whole hook diverted.
func TestMatchesDryRun(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"luafw.yaml": "plugins:\n  - file: p.lua\n", "p.lua": `
fw.register{hook="input", match={proto="tcp", dport={22, "2000-2010"}, ct_state="new"}, fn=function() end}
fw.register{hook="input", match={proto="udp", dport=53}, fn=function() end}
fw.register{hook="output", fn=function() end}`})
	out, err := exec.Command(luafwBinary(t), "run", "--dry-run", "--config", filepath.Join(dir, "luafw.yaml")).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{
		"meta l4proto tcp th dport { 22, 2000-2010 } ct state new jump div_input_1_ct",
		"meta l4proto udp th dport 53 jump div_input_1_ct",
		`ct state established counter xt target NFQUEUE --queue-num 1006 --queue-bypass comment "luafw div 1 established"`,
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("dry run lacks %q:\n%s", want, out)
		}
	}
}

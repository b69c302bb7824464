package tests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/luafw/luafw/tests/lab"
)

// The process ceiling holds against a callback that doubles a string with
// `..` (an operator no hook sees) under a generous budget: `luafw replay`
// with memory_limit 512MiB cuts the call off when the heap nears the
// ceiling, the packet gets on_error, and the child's peak RSS stays near
// the ceiling instead of the gigabytes the loop asks for.
func TestReplayMemoryCeiling(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates about half a GiB in a child process")
	}
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("double.lua", `
fw.register{hook = "forward", fn = function(pkt)
  local s = string.rep("x", 1048576)
  for i = 1, 30 do s = s .. s end -- 1 PiB, if nothing stops it
  return fw.ACCEPT
end}
`)
	cfg := write("luafw.yaml", `
memory_limit: 512MiB
plugins:
  - file: double.lua
    on_error: drop
    budget: 1s
`)
	pcapPath := filepath.Join(dir, "three.pcap")
	writeHostilePcap(t, pcapPath, nil, 2) // three ordinary packets

	cmd := exec.Command(luafwBinary(t), "replay", "--config", cfg, "--pcap", pcapPath)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("replay took %v; stderr:\n%s", time.Since(start), stderr.String())
	if err != nil {
		t.Fatalf("luafw replay: %v", err)
	}

	sc := bufio.NewScanner(&stdout)
	n := 0
	for sc.Scan() {
		var res struct {
			Verdict string
			Errors  int
		}
		if err := json.Unmarshal(sc.Bytes(), &res); err != nil {
			t.Fatalf("bad output line %q: %v", sc.Text(), err)
		}
		if res.Verdict != "drop" || res.Errors != 1 {
			t.Errorf("packet %d: %s with %d errors, want the on_error drop", n+1, res.Verdict, res.Errors)
		}
		n++
	}
	if n != 3 {
		t.Errorf("%d results, want 3", n)
	}
	// On a slow machine the budget may run out first: fine, the bound
	// holds either way (host's TestProcessCeilingCutsCalls covers the cut).
	t.Logf("calls cut for memory: %d, for their budget: %d",
		strings.Count(stderr.String(), "near its memory ceiling\" on_error"), strings.Count(stderr.String(), "exceeded its budget"))
	checkCeilingPeak(t, cmd.ProcessState, "luafw replay")
}

// The same against the live daemon: a plugin doubling a string on packets
// to one port gets them dropped (its on_error), the daemon stays up and
// under its ceiling, and other traffic still flows through the plugin.
func TestDaemonMemoryCeiling(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 120*time.Second)
	d := startDaemon(t, l.Router, map[string]string{
		"luafw.yaml": "memory_limit: 512MiB\nplugins:\n  - {file: double.lua, on_error: drop, budget: 1s}\n",
		"double.lua": `fw.register{hook = "forward", fn = function(pkt)
			if pkt.proto == "udp" and pkt.dport == 5001 then
				local s = string.rep("x", 1048576)
				for i = 1, 30 do s = s .. s end
			end
		end}`,
	})
	bomb, err := l.Server.ServeUDP(":5001")
	if err != nil {
		t.Fatal(err)
	}
	defer bomb.Close()
	plain, err := l.Server.ServeUDP(":5002")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	const bombs, plains = 3, 50
	if _, err := l.Client.UDPFlood(ctx, fmt.Sprintf("%s:5001", l.Server.Addr4), bombs, 64, 2); err != nil {
		t.Fatal(err)
	}
	// Each call is cut off for memory, or, on a slow machine, first for
	// its budget.
	deadline := time.Now().Add(90 * time.Second)
	for strings.Count(d.logs.String(), `msg="callback failed"`) < bombs {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d calls failed", strings.Count(d.logs.String(), `msg="callback failed"`), bombs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("calls cut for memory: %d, for their budget: %d",
		strings.Count(d.logs.String(), "near its memory ceiling\" on_error"), strings.Count(d.logs.String(), "exceeded its budget"))
	if _, err := l.Client.UDPFlood(ctx, fmt.Sprintf("%s:5002", l.Server.Addr4), plains, 64, 1000); err != nil {
		t.Fatal(err)
	}
	if err := plain.WaitCount(ctx, plains); err != nil {
		t.Errorf("after the cuts: %v", err)
	}
	if n := bomb.Count(); n != 0 {
		t.Errorf("%d packets of the cut calls got through; want their on_error drop", n)
	}
	d.stop()
	checkCeilingPeak(t, d.cmd.ProcessState, "luafw run")
}

// checkCeilingPeak checks an exited child's peak RSS against the 512 MiB
// ceiling the tests configure, with room for what is not Go heap.
func checkCeilingPeak(t *testing.T, ps *os.ProcessState, what string) {
	t.Helper()
	kib, err := peakRSS(ps)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("peak RSS of %s: %d MiB", what, kib>>10)
	if kib > 600<<10 {
		t.Errorf("peak RSS %d MiB, want under 600 MiB (ceiling 512 MiB)", kib>>10)
	}
}

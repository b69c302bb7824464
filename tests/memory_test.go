package tests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/luafw/luafw/host/packet"
	"github.com/luafw/luafw/pcap"
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
	writePcap(t, pcapPath, 3)

	cmd := exec.Command(luafwBinary(t), "replay", "--config", cfg, "--pcap", pcapPath)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("replay took %v; stderr:\n%s", time.Since(start), stderr.String())
	if err != nil {
		t.Fatalf("luafw replay: %v", err)
	}
	peak := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10 // KiB on Linux
	t.Logf("peak RSS of luafw replay: %d MiB", peak>>20)

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
	if peak > 600<<20 {
		t.Errorf("peak RSS %d MiB, want under 600 MiB (ceiling 512 MiB)", peak>>20)
	}
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
	peak := d.cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10
	t.Logf("peak RSS of luafw run: %d MiB", peak>>20)
	if peak > 600<<20 {
		t.Errorf("peak RSS %d MiB, want under 600 MiB (ceiling 512 MiB)", peak>>20)
	}
}

// writePcap writes n small TCP packets to a raw-IP capture file.
func writePcap(t *testing.T, path string, n int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := pcap.NewWriter(f, pcap.LinkTypeRaw)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		data, err := packet.Build(packet.Spec{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("198.51.100.1"),
			Proto: packet.ProtoTCP, SrcPort: uint16(40000 + i), DstPort: 80, TCPFlags: 0x02})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WritePacket(time.Unix(1_700_000_000+int64(i), 0), data); err != nil {
			t.Fatal(err)
		}
	}
}

package tests

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/luafw/luafw/tests/lab"
)

// TestHostileDaemonReloadFiles: plugin files and packets that ended the
// daemon (issue 18) now cost a refused reload or one verdict. The daemon
// runs a guard (port 23 dropped), a plugin that sorts a sparse table for
// packets to port 6801 (on_error drop) and one more plugin that the test
// replaces with hostile files: a million levels of nesting and a 64 GiB
// sparse file. Each reload is refused with the file (and line), soon; the
// daemon stays up, the guard keeps dropping port 23 and ordinary traffic
// flows. Each hostile datagram to 6801 costs its own verdict only.
func TestHostileDaemonReloadFiles(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 90*time.Second)
	const sortPort = 6801
	d := startDaemon(t, l.Router, map[string]string{
		"luafw.yaml": "budget: 2ms\nplugins:\n  - file: guard.lua\n  - {file: sorter.lua, on_error: drop}\n  - file: other.lua\n",
		"guard.lua":  drop23,
		"sorter.lua": `fw.register{hook = "forward", fn = function(pkt)
  if pkt.dport ~= ` + strconv.Itoa(sortPort) + ` then return end
  local t = {}
  for k = 0, 40 do t[2 ^ k] = k end -- the length search doubles to a border near 2^40
  table.sort(t)
  return fw.ACCEPT
end}`,
		"other.lua": `fw.register{hook = "forward", fn = function(pkt) end}`,
	}, "--metrics", "127.0.0.1:0")
	pid := daemonPid(t, d)
	serveTCP(t, l.Server, 23)
	ordinarySink := udpSink(t, l.Server, 7000)
	ord := udpTo(t, ctx, l, 7000)
	sortSink := udpSink(t, l.Server, sortPort)
	hostile := udpTo(t, ctx, l, sortPort)
	alive := func(when string) {
		t.Helper()
		select {
		case <-d.done:
			t.Fatalf("%s: the daemon died: %v\n%s", when, d.err, firstLines(d.logs.String(), 40))
		default:
		}
		if res := connect(ctx, l.Client, l.Server.Addr4, 23, time.Second); res.Outcome != lab.TimedOut {
			t.Errorf("%s: port 23 %v, want still dropped by the guard", when, res)
		}
	}
	sent := 0
	ordinary := func() {
		for k := 0; k < 5; k++ {
			if _, err := ord.Write([]byte("hello " + strconv.Itoa(sent))); err != nil {
				t.Fatal(err)
			}
			sent++
		}
	}
	alive("at start")

	// Hostile plugin files, each refused by a reload.
	dir := d.dir
	other := filepath.Join(dir, "other.lua")
	for _, c := range []struct {
		name, want string
		write      func() error
	}{
		{"a million levels", "other.lua:1: chunk has too many syntax levels", func() error {
			return os.WriteFile(other, []byte("x = "+strings.Repeat("{", 1e6)+strings.Repeat("}", 1e6)), 0o644)
		}},
		{"a million calls", "other.lua:1: chunk has too many syntax levels", func() error {
			return os.WriteFile(other, []byte("x = "+strings.Repeat("f(", 1e6)+strings.Repeat(")", 1e6)), 0o644)
		}},
		{"64 GiB sparse", "other.lua: plugin file larger than the limit of 4194304 bytes", func() error {
			if err := os.Remove(other); err != nil {
				return err
			}
			f, err := os.Create(other)
			if err != nil {
				return err
			}
			defer f.Close()
			return f.Truncate(64 << 30)
		}},
	} {
		if err := c.write(); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		out, err := l.Router.Run(ctx, luafwBinary(t), "reload")
		took := time.Since(t0)
		if err == nil {
			t.Errorf("%s: luafw reload exited 0:\n%s", c.name, out)
		}
		d.waitLog(c.want, 5*time.Second)
		t.Logf("%s: reload refused in %v", c.name, took.Round(time.Millisecond))
		if took > 5*time.Second {
			t.Errorf("%s: the refused reload took %v", c.name, took)
		}
		alive("after " + c.name)
		ordinary()
	}

	// Packets that sort a sparse table: each is cut and dropped.
	const hostilePackets = 3
	for i := 0; i < hostilePackets; i++ {
		if _, err := hostile.Write(payloadA); err != nil {
			t.Fatal(err)
		}
		ordinary()
		time.Sleep(20 * time.Millisecond)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	waitErr := ordinarySink.WaitCount(waitCtx, int64(sent))
	alive("after the sparse sorts")
	if n := sortSink.Count(); n != 0 {
		t.Errorf("%d datagrams that sort a sparse table arrived, want none (on_error drop)", n)
	}
	m := scrape(t, d)
	failed := pluginFailures(m, "sorter", "timeout", "error", "memory")
	if failed < hostilePackets {
		t.Errorf("metrics count %v failures of sorter, want at least %d", failed, hostilePackets)
	}
	checkLost(t, float64(sent)-float64(ordinarySink.Count()), failed-hostilePackets, waitErr)
	checkDaemonPeak(t, pid)
	d.stop()
}

package main

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// The command name may hold spaces and parentheses.
	line := "4242 (luafw (x) y) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 9 0 100 0 0"
	got, err := parseStatCPU(line)
	if err != nil {
		t.Fatal(err)
	}
	if want := 3250 * time.Millisecond; got != want {
		t.Errorf("cpu %v, want %v (utime 250 + stime 75 ticks)", got, want)
	}
	for _, bad := range []string{"", "42 (x) S 1 2", "42 (x) S 1 2 3 4 5 6 7 8 9 u s 0"} {
		if _, err := parseStatCPU(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestParseMachineCPU(t *testing.T) {
	m, err := parseMachineCPU("cpu  100 5 50 1000 20 3 7 2 0 0")
	if err != nil {
		t.Fatal(err)
	}
	if m.total != 1187 || m.busy != 167 {
		t.Errorf("total %d busy %d, want 1187 and 167 (idle and iowait are not busy)", m.total, m.busy)
	}
	if _, err := parseMachineCPU("cpu0 1 2 3 4 5 6 7 8"); err == nil {
		t.Error("per-cpu line accepted")
	}
}

// TestReadKernelQueues reads a fixture table through procfs, the parser
// the daemon's metrics use too.
func TestReadKernelQueues(t *testing.T) {
	dir := t.TempDir()
	if qs, err := readKernelQueues(dir); err != nil || len(qs) != 0 {
		t.Errorf("no table: %v, %v; want no queues", qs, err)
	}
	os.MkdirAll(filepath.Join(dir, "net/netfilter"), 0o755)
	table := filepath.Join(dir, "net/netfilter/nfnetlink_queue")
	os.WriteFile(table, []byte(`    0  12345     7 2 65531     3     4      900  1
 1001  12345     0 2 65531     0     0       10  1
`), 0o644)
	qs, err := readKernelQueues(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) != 2 {
		t.Fatalf("%d queues, want 2", len(qs))
	}
	if q := qs[0]; q.Waiting != 7 || q.Dropped != 3 || q.UDrop != 4 || q.Seq != 900 {
		t.Errorf("queue 0: %+v", q)
	}
	if q := qs[1001]; q.Queue != 1001 || q.Seq != 10 {
		t.Errorf("queue 1001: %+v", q)
	}
	os.WriteFile(table, []byte("1 2 3\n"), 0o644)
	if _, err := readKernelQueues(dir); err == nil {
		t.Error("short line accepted")
	}
}

func TestSegmentsOf(t *testing.T) {
	dry := "# segments (hook, chain priority, callbacks)\nforward priority 1 (after filter)\nprerouting priority -299\n\ntable ip luafw {\n"
	got := segmentsOf(dry)
	if len(got) != 2 || got[0] != "forward priority 1 (after filter)" || got[1] != "prerouting priority -299" {
		t.Errorf("segments %q", got)
	}
}

func TestWriteBlocklist(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.txt"), filepath.Join(dir, "b.txt")
	for _, p := range []string{a, b} {
		if err := writeBlocklist(p, 2000); err != nil {
			t.Fatal(err)
		}
	}
	ba, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if !bytes.Equal(ba, bb) {
		t.Error("two lists differ: want the same list on every run")
	}
	seen := map[netip.Prefix]bool{}
	lab := netip.MustParsePrefix("10.0.0.0/8")
	for _, line := range strings.Split(strings.TrimSpace(string(ba)), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		p, err := netip.ParsePrefix(line)
		if err != nil || p != p.Masked() || seen[p] || p.Overlaps(lab) {
			t.Fatalf("line %q: parse error %v, not masked, duplicate or overlapping the lab", line, err)
		}
		seen[p] = true
	}
	if len(seen) != 2000 {
		t.Errorf("%d prefixes, want 2000", len(seen))
	}
}

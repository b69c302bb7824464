package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/luafw/luafw/daemon"
	"github.com/luafw/luafw/daemon/control"
)

// fakeTracer answers trace with one packet and a loss note, and records
// the arguments it was given; status answers with counters that grow by
// 100 calls per request.
func fakeTracer(t *testing.T) (path string, args func() daemon.TraceArgs) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "ctl.sock")
	srv, err := control.Listen(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got daemon.TraceArgs
	srv.Handle("trace", func(_ context.Context, raw json.RawMessage, send func(any) error) (any, error) {
		mu.Lock()
		err := control.DecodeArgs(raw, &got)
		mu.Unlock()
		if err != nil {
			return nil, err
		}
		mark := uint32(0x20)
		p := &daemon.TracePacket{Time: time.Unix(1700000000, 0), Hook: "forward", Segment: "forward@1", Src: "10.0.0.1",
			Dst: "10.0.0.2", Proto: "tcp", SPort: 40000, DPort: 23, Len: 60, In: "r0", Out: "r1", CTState: "new",
			Callbacks: []daemon.TraceCall{
				{Plugin: "marker", Name: "mark-all", Priority: -10, Verdict: "accept", TookNS: 1500, Mark: &mark, Tagged: []string{"seen"}},
				{Plugin: "guard", Name: "no-telnet", Verdict: "drop", TookNS: 900},
			},
			Verdict: "drop", By: "guard", ByName: "no-telnet", Kernel: daemon.TraceKernel{Verdict: "drop"}}
		send(daemon.TraceItem{Lost: 37})
		send(daemon.TraceItem{Packet: p})
		return daemon.TraceSummary{Ended: "count", Shown: 1, Matched: 38, Lost: 37}, nil
	})
	var calls uint64
	srv.Handle("status", func(context.Context, json.RawMessage, func(any) error) (any, error) {
		mu.Lock()
		calls += 100
		n := calls
		mu.Unlock()
		st := daemon.Status{Version: "v1", PID: 42, LatencyBoundsNS: []int64{1000, 2000}}
		st.Plugins = []daemon.PluginStatus{{Name: "guard", Callbacks: []daemon.CallbackStatus{
			{Name: "no-telnet", Hook: "forward", Calls: n, Verdicts: map[string]uint64{"accept": n}, LatencyBuckets: []uint64{n, 0, 0}}}}}
		st.Segments = []daemon.SegmentStatus{{Key: "forward@1", Verdicts: map[string]uint64{"accept": n},
			Sockets: []daemon.SocketStatus{{Queues: []uint16{1000}, Received: n}}}}
		return st, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return path, func() daemon.TraceArgs {
		mu.Lock()
		defer mu.Unlock()
		return got
	}
}

func TestTraceCommand(t *testing.T) {
	path, args := fakeTracer(t)
	// Flags before and after the expression's words.
	code, out, errs := runCLI("trace", "--socket", path, "--port", "23", "pkt.dport", "==", "23", "--json", "-n", "5",
		"--hook", "forward,input", "--verdict", "drop")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	a := args()
	if a.Expr != "pkt.dport == 23" || a.Port != 23 || a.Count != 5 || a.Seconds != 60 || len(a.Hooks) != 2 || a.Verdicts[0] != "drop" {
		t.Errorf("arguments sent: %+v", a)
	}
	var p daemon.TracePacket
	if err := json.Unmarshal([]byte(out), &p); err != nil || p.ByName != "no-telnet" || len(p.Callbacks) != 2 {
		t.Errorf("--json output %q: %v", out, err)
	}
	if !strings.Contains(errs, "… 37 trace lines lost: reader too slow") || !strings.Contains(errs, "trace ended (count): 1 shown, 38 matched, 37 lost") {
		t.Errorf("stderr: %q", errs)
	}

	code, out, _ = runCLI("trace", "--socket", path)
	flat := strings.Join(strings.Fields(out), " ")
	for _, want := range []string{"forward [forward@1] tcp 10.0.0.1:40000 -> 10.0.0.2:23 in r0 out r1 len 60 ct new",
		"marker/mark-all prio -10 accept 1.5µs mark=0x20 +tag seen", "guard/no-telnet prio 0 drop 900ns",
		"=> drop by guard/no-telnet; kernel: drop"} {
		if code != 0 || !strings.Contains(flat, want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
	}

	for _, bad := range [][]string{{"trace", "-n", "0"}, {"trace", "--port", "x"}, {"trace", "--for", "-1s"}} {
		if code, _, _ := runCLI(bad...); code != 2 {
			t.Errorf("%v: exit %d, want 2", bad, code)
		}
	}
}

func TestTopOnceWithoutTerminal(t *testing.T) {
	path, _ := fakeTracer(t)
	code, out, errs := runCLI("top", "--socket", path, "--interval", "200ms")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	// 100 more calls in each snapshot, 200ms apart: about 500/s.
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == "guard" {
			if len(f) != 12 || f[1] != "no-telnet" || f[8] != "≤1µs" || f[11] != "ok" {
				t.Fatalf("row %q", line)
			}
			// The snapshots are at least 200ms apart.
			if r, err := strconv.ParseFloat(f[4], 64); err != nil || r <= 0 || r > 500 {
				t.Errorf("calls/s %q: %v", f[4], err)
			}
			return
		}
	}
	t.Errorf("no plugin row:\n%s", out)
}

func TestQuantiles(t *testing.T) {
	bounds := []int64{1000, 2000, 5000}
	for _, tc := range []struct {
		before, after []uint64
		p50, p99      string
	}{
		{nil, []uint64{0, 0, 0, 0}, "-", "-"},
		{[]uint64{5, 5, 5, 5}, []uint64{105, 5, 5, 5}, "≤1µs", "≤1µs"},
		{nil, []uint64{50, 49, 0, 1}, "≤1µs", "≤2µs"},
		{nil, []uint64{10, 0, 0, 90}, ">5µs", ">5µs"},
	} {
		p50, p99 := quantiles(bounds, tc.before, tc.after)
		if p50 != tc.p50 || p99 != tc.p99 {
			t.Errorf("%v -> %v: %s %s, want %s %s", tc.before, tc.after, p50, p99, tc.p50, tc.p99)
		}
	}
}

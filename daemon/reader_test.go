package daemon

import (
	"math"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/luafw/luafw/internal/engine"
	"github.com/luafw/luafw/nfq/queue"
)

// TestQueueReaderBurst runs bursts through a queue reader as a socket
// would: each packet gets its own verdict though the reader reuses one
// Packet, the segment's counters hold the bursts' verdicts, the heartbeat
// shows no burst in progress afterwards, and the reader keeps no reference
// to the socket's buffer.
func TestQueueReaderBurst(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"luafw.yaml": "plugins:\n  - file: p.lua\n",
		"p.lua": `fw.register{hook="forward", fn=function(pkt)
	if pkt.dport == 23 then return fw.DROP end
	if pkt.dport == 24 and pkt.indev ~= "lo" then error("indev " .. tostring(pkt.indev)) end
end}`,
	}
	d := newTestDaemon(t, dir, files)
	const key = "forward@0"
	r := &segRunner{d: d, key: key, stats: d.statsFor(key)}
	r.seg.Store(&Segment{Hook: engine.Forward, Lo: math.MinInt32, Hi: math.MaxInt32, Last: true})
	q := &queueReader{r: r, w: d.eng.NewWorker(), beat: &heartbeat{}, first: 1000}
	defer q.w.Close()

	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skipf("no loopback interface to name: %v", err)
	}
	ports := []uint16{80, 23, 80, 24, 23}
	msgs := make([]queue.Msg, len(ports))
	for i, p := range ports {
		msgs[i] = queue.Msg{Queue: 1000, ID: uint32(i + 1), Payload: udpTo(t, p), InDev: uint32(lo.Index)}
	}
	for range 2 {
		out := make([]queue.Verdict, len(msgs))
		q.burst(msgs, out)
		for i, p := range ports {
			want := uint32(queue.VerdictAccept)
			if p == 23 {
				want = queue.VerdictDrop
			}
			if out[i].Verdict != want {
				t.Errorf("packet %d (port %d): verdict %d, want %d", i, p, out[i].Verdict, want)
			}
		}
	}
	if got := r.stats.verdicts[engine.Drop].Load(); got != 4 {
		t.Errorf("drops counted %d, want 4", got)
	}
	if got := r.stats.verdicts[engine.Accept].Load(); got != 6 {
		t.Errorf("accepts counted %d, want 6 (a failing callback's packet takes its on_error, accept)", got)
	}
	if seq := q.beat.seq.Load(); seq != 4 {
		t.Errorf("heartbeat at %d after two bursts, want 4 (even: not inside a burst)", seq)
	}
	if r.progress() != 0 {
		t.Errorf("progress of a runner without registered readers: %d", r.progress())
	}
	if q.pkt.Data != nil {
		t.Error("the reader still references the last packet's bytes after the burst")
	}
}

// newTestDaemon writes files (luafw.yaml and what it names) to dir and
// makes a daemon of them, not running; its engine closes with the test.
func newTestDaemon(t *testing.T, dir string, files map[string]string) *Daemon {
	t.Helper()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d, err := New(Options{ConfigPath: filepath.Join(dir, "luafw.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.eng.Close)
	return d
}

// TestIfNames: index 0 is no interface, known indexes get their names, and
// an unknown one its number, the same on every call.
func TestIfNames(t *testing.T) {
	var n ifNames
	if got := n.name(0); got != "" {
		t.Errorf("name(0) = %q, want empty", got)
	}
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skipf("no loopback interface: %v", err)
	}
	for range 2 {
		if got := n.name(uint32(lo.Index)); got != "lo" {
			t.Errorf("name(%d) = %q, want lo", lo.Index, got)
		}
		if got := n.name(1 << 30); got != "if1073741824" {
			t.Errorf("name(1<<30) = %q, want if1073741824", got)
		}
	}
}

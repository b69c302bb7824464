package engine

import (
	"log/slog"
	"testing"
	"time"

	"github.com/luafw/luafw/host/state"
)

// waitAsleep waits until the engine's background goroutines sleep.
func waitAsleep(t *testing.T, e *Engine) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !e.wd.Asleep() {
		if time.Now().After(deadline) {
			t.Fatal("the engine did not go to sleep while idle")
		}
		time.Sleep(time.Millisecond)
	}
}

// A call that starts while the watchdog sleeps is still cut off at its
// budget, every time, and the engine goes back to sleep when idle.
func TestIdleSleepStillCutsCalls(t *testing.T) {
	e, _ := newTestEngine(t)
	spec := src("loop", `fw.register{hook="input", fn=function(pkt)
	if pkt.dport == 9 then while true do end end
	return fw.ACCEPT
end}`)
	spec.Budget = 5 * time.Millisecond
	spec.OnError = Drop
	mustLoad(t, e, spec)
	w := e.NewWorker()
	defer w.Close()
	loop := &Packet{Hook: Input, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1000, 9, 0)}
	ok := &Packet{Hook: Input, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1000, 80, 0)}
	for i := 0; i < 5; i++ {
		waitAsleep(t, e)
		start := time.Now()
		d := w.Run(loop)
		if d.Verdict != Drop || d.Errors != 1 {
			t.Fatalf("round %d: endless callback after sleep: verdict %v errors %d, want drop (on_error) with an error", i, d.Verdict, d.Errors)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("round %d: the cut took %v", i, took)
		}
		// Whether the watchdog is awake right now is not asserted: a few
		// quiet ticks after the cut it may sleep again, and a loaded
		// machine can deschedule this goroutine for longer than that.
		if d := w.Run(ok); d.Verdict != Accept || d.Errors != 0 {
			t.Fatalf("round %d: the next packet: verdict %v errors %d (a late interrupt?)", i, d.Verdict, d.Errors)
		}
	}
}

// While the engine sleeps, the clocks scripts and state see still move.
func TestIdleSleepClocks(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e, src("clock", `fw.register{hook="input", fn=function(pkt) return fw.ACCEPT end}`))
	waitAsleep(t, e)
	before := e.opts.Clock()
	time.Sleep(20 * time.Millisecond)
	if got := e.opts.Clock().Sub(before); got < 20*time.Millisecond {
		t.Errorf("the state clock moved %v in 20ms of sleep", got)
	}
	m := e.State().Map("idle-ttl")
	if err := m.Set("k", state.StringValue("v"), 30*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(60 * time.Millisecond)
	if _, ok := m.Get("k"); ok {
		t.Errorf("an entry with a 30ms TTL is still there after 60ms of sleep")
	}
	w := e.NewWorker()
	defer w.Close()
	coarseBefore := e.wd.Coarse()
	time.Sleep(5 * time.Millisecond)
	w.Run(&Packet{Hook: Input, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, 0)})
	if e.wd.Coarse()-coarseBefore < int64(5*time.Millisecond) {
		t.Errorf("a packet after sleep saw a stale coarse clock")
	}
}

// The heap watch reads the heap while calls run, also for calls that start
// around the moment the watchdog decides to sleep (after 10 ms idle).
func TestIdleHeapWatchAwakeDuringCalls(t *testing.T) {
	var buf syncBuffer
	e := New(Options{MemoryLimit: 1 << 30, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	t.Cleanup(e.Close)
	mustLoad(t, e, src("busy", `fw.register{hook="input", fn=function(pkt)
	local t = os.clock()
	while os.clock() - t < 0.2 do end
	return fw.ACCEPT
end}`))
	w := e.NewWorker()
	defer w.Close()
	p := &Packet{Hook: Input, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, 0)}
	for i := 0; i < 12; i++ {
		// Idle for about the watchdog's idle span, give or take.
		time.Sleep(time.Duration(6+i%3*2) * time.Millisecond)
		before := e.wd.HeapChecks()
		if d := w.Run(p); d.Errors != 0 {
			t.Fatalf("round %d: the busy call failed:\n%s", i, buf.String())
		}
		if e.wd.HeapChecks() == before {
			t.Fatalf("round %d: the heap watch read nothing during a 200 ms call (asleep: %v)", i, e.wd.Asleep())
		}
	}
}

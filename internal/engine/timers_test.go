package engine

import (
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// manualClock is a clock that moves only when told.
type manualClock struct{ ns atomic.Int64 }

func (c *manualClock) Now() time.Time  { return time.Unix(0, c.ns.Load()) }
func (c *manualClock) set(t time.Time) { c.ns.Store(t.UnixNano()) }

// newTimerEngine returns an engine with a manual clock whose timers run
// only when the test says.
func newTimerEngine(t *testing.T) (*Engine, *manualClock, *syncBuffer) {
	t.Helper()
	var buf syncBuffer
	clk := &manualClock{}
	clk.set(time.Unix(1_700_000_000, 0))
	e := New(Options{Logger: slog.New(slog.NewTextHandler(&buf, nil)), Clock: clk.Now, ManualTimers: true})
	t.Cleanup(e.Close)
	return e, clk, &buf
}

func counter(e *Engine, name string) int64 { return e.State().Counter(name).Get() }

// advance moves the clock by d, running the timers due on the way.
func advance(e *Engine, clk *manualClock, d time.Duration) int {
	return e.RunTimersUntil(clk.Now().Add(d), clk.set)
}

func TestTimerRunsOncePerPluginWhateverTheWorkers(t *testing.T) {
	e, clk, _ := newTimerEngine(t)
	mustLoad(t, e, src("tick", `
local n = state.counter("tick.n")
local once = state.counter("tick.once")
fw.every(10, function() n:incr() end)
fw.after(25, function() once:incr() end)
fw.register{hook = "input", fn = function(pkt) end}`))
	// Three workers, each with its own state of the plugin (its top level
	// ran in each): the timers still run once per plugin.
	for range 3 {
		w := e.NewWorker()
		w.Run(&Packet{Hook: Input, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, 0x02)})
		defer w.Close()
	}
	if got := advance(e, clk, 9*time.Second); got != 0 || counter(e, "tick.n") != 0 {
		t.Fatalf("before the first interval: %d runs, n = %d", got, counter(e, "tick.n"))
	}
	advance(e, clk, 51*time.Second) // t = 60 s
	if n, once := counter(e, "tick.n"), counter(e, "tick.once"); n != 6 || once != 1 {
		t.Fatalf("after 60 s: every(10) ran %d times (want 6), after(25) %d (want 1)", n, once)
	}
	ti := e.Timers()
	if len(ti) != 1 || ti[0].Plugin != "tick" || ti[0].Every != 10*time.Second || ti[0].Runs != 6 || ti[0].Where != "tick.lua:4" {
		t.Fatalf("Timers() = %+v, want the every(10) timer set at tick.lua:4 with 6 runs (the after(25) is done)", ti)
	}
}

func TestTimerQuietEngineFiresOnRealTime(t *testing.T) {
	e, _ := newTestEngine(t) // the real clock and the engine's own timer goroutine
	mustLoad(t, e, src("quiet", `
local fired = state.counter("quiet.fired")
fw.after(0.1, function() fired:incr() end)`))
	// No packet, no worker: the timer still fires. Wait for it, however
	// busy the machine (this asserts that it fires, not when).
	deadline := time.Now().Add(20 * time.Second)
	for counter(e, "quiet.fired") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("fw.after(0.1) did not fire within 20 s on a quiet engine")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTimerSetAndCancelFromTimers(t *testing.T) {
	e, clk, _ := newTimerEngine(t)
	mustLoad(t, e, src("chain", `
local n = state.counter("chain.n")
local h
h = fw.every(1, function()
  if n:incr() == 3 then
    h:cancel()
    fw.after(5, function() n:incr(100) end) -- a timer sets a timer
  end
end)`))
	advance(e, clk, 20*time.Second)
	if got := counter(e, "chain.n"); got != 103 {
		t.Fatalf("n = %d, want 3 runs of every(1) then one of after(5): 103", got)
	}
	if ti := e.Timers(); len(ti) != 0 {
		t.Fatalf("timers left: %+v", ti)
	}
}

func TestTimerRefusedInPacketCallback(t *testing.T) {
	e, _, buf := newTimerEngine(t)
	mustLoad(t, e, PluginSpec{Name: "cb", File: "cb.lua", Budget: time.Second, OnError: Drop, Source: []byte(`
fw.register{hook = "input", fn = function(pkt) fw.after(1, function() end) end}`)})
	d := e.Process(&Packet{Hook: Input, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, 0x02)})
	if d.Verdict != Drop || d.Errors != 1 {
		t.Fatalf("decision %+v, want the plugin's on_error (drop) after the error", d)
	}
	if !strings.Contains(buf.String(), "not in a packet callback") {
		t.Fatalf("log does not say why:\n%s", buf)
	}
}

func TestTimerLimitsAtLoad(t *testing.T) {
	cases := []struct{ name, code, want string }{
		{"short", "\nfw.every(0.05, function() end)", "fw.every: 0.05 seconds is outside 0.1 s"},
		{"nan", "fw.after(0/0, function() end)", "fw.after: NaN seconds is outside"},
		{"nofn", "fw.after(1)", "function expected"},
		{"many", "for i = 1, 65 do fw.every(1, function() end) end", "at most 64 timers"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, _, _ := newTimerEngine(t)
			err := e.Load([]PluginSpec{src(tc.name, tc.code)})
			var le *LoadError
			if !errors.As(err, &le) || !strings.Contains(le.Reason, tc.want) || le.Line == 0 {
				t.Fatalf("err = %v, want a load error at a line saying %q", err, tc.want)
			}
		})
	}
}

func TestTimerFailuresCountedAndQuarantine(t *testing.T) {
	e, clk, buf := newTimerEngine(t)
	spec := src("bad", `
local n = state.counter("bad.n")
fw.every(1, function() n:incr(); error("boom") end)
fw.every(1, function() while true do end end)`)
	spec.Budget = 20 * time.Millisecond
	spec.QuarantineAfter = 4
	spec.QuarantineFor = time.Hour
	mustLoad(t, e, spec)
	advance(e, clk, 2*time.Second) // 4 failures: quarantined
	advance(e, clk, 10*time.Second)
	ti := e.Timers()
	if len(ti) != 2 {
		t.Fatalf("Timers() = %+v", ti)
	}
	if ti[0].Failures != 2 || !strings.Contains(ti[0].LastError, "boom") || ti[0].Skipped != 10 {
		t.Fatalf("erring timer: %+v, want 2 failures then 10 runs skipped in quarantine", ti[0])
	}
	if ti[1].Failures != 2 || !strings.Contains(ti[1].LastError, "exceeded its budget") {
		t.Fatalf("looping timer: %+v, want 2 budget cuts", ti[1])
	}
	if counter(e, "bad.n") != 2 {
		t.Fatalf("the erring timer ran %d times, want 2 (skipped while quarantined)", counter(e, "bad.n"))
	}
	for _, want := range []string{"timer failed", "timer=bad.lua:3", "plugin quarantined"} {
		if !strings.Contains(buf.String(), want) {
			t.Fatalf("log lacks %q:\n%s", want, buf)
		}
	}
}

func TestTimerStoppedOnReload(t *testing.T) {
	e, clk, _ := newTimerEngine(t)
	mustLoad(t, e, src("r", `local n = state.counter("r.n"); fw.every(1, function() n:incr() end)`))
	advance(e, clk, 3*time.Second)
	mustLoad(t, e, src("r", `local n = state.counter("r.n"); fw.every(1, function() n:incr(1000) end)`))
	advance(e, clk, 2*time.Second)
	mustLoad(t, e, src("r", `fw.register{hook = "input", fn = function() end}`))
	advance(e, clk, 5*time.Second)
	if got := counter(e, "r.n"); got != 2003 {
		t.Fatalf("n = %d, want 3 runs of the first version, 2 of the second, none after the third (2003)", got)
	}
	if ti := e.Timers(); len(ti) != 0 {
		t.Fatalf("timers after a reload without them: %+v", ti)
	}
}

func TestTimerStateMemoryLimit(t *testing.T) {
	e, clk, buf := newTimerEngine(t)
	spec := src("hog", `
local keep = {}
fw.every(1, function() for i = 1, 20000 do keep[#keep + 1] = {i} end end)`)
	spec.Memory = 1 << 20
	mustLoad(t, e, spec)
	// The timer worker measures its states between runs, in slices spaced
	// in real time (pluginmemory.go): run timers until it has.
	for i := 0; i < 200 && !strings.Contains(buf.String(), "plugin over its memory limit"); i++ {
		e.askWorkers(choreMeasure)
		advance(e, clk, time.Second)
		time.Sleep(time.Millisecond)
	}
	if !strings.Contains(buf.String(), "plugin over its memory limit") {
		t.Fatalf("the timer state's memory was not limited:\n%s", buf)
	}
}

package engine

import (
	"log/slog"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/luafw/luafw/host/state"
)

// measureSource loads code as a plugin and returns the estimate of one of
// its states.
func measureSource(t *testing.T, code string, limit int64) int64 {
	t.Helper()
	e, _ := newTestEngine(t)
	spec := src("m", code+"\nfw.register{hook='input', fn=function() end}")
	mustLoad(t, e, spec)
	p := e.gen.Load().plugins[0]
	ps, err := e.newPluginState(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.L.Close()
	var m memWalker
	return m.measure(ps, limit)
}

func TestMemoryEstimate(t *testing.T) {
	const big = 1 << 62
	base := measureSource(t, "", big)
	if base <= 0 || base > 1<<20 {
		t.Fatalf("a fresh state is estimated at %d bytes; want some, under 1 MiB", base)
	}
	t.Logf("fresh state: %d bytes", base)
	cases := []struct {
		name     string
		code     string
		min, max int64 // beyond the fresh state
	}{
		{"string", `s = string.rep("x", 1048576)`, 1 << 20, 1<<20 + 1024},
		// One string held a thousand times is counted once.
		{"shared string", `local s = string.rep("x", 1048576) t = {} for i = 1, 1000 do t[i] = s end`, 1 << 20, 1<<20 + 64<<10},
		{"array", `t = {} for i = 1, 50000 do t[i] = i end`, 50000 * (sizeArraySlot + sizeNumber), 50000*(sizeArraySlot+sizeNumber) + 4096},
		{"hash", `t = {} for i = 1, 10000 do t["k" .. i] = true end`, 10000 * sizeHashEntry, 10000 * (sizeHashEntry + 64)},
		{"cycle", `a = {} b = {a = a} a.b = b`, 2 * (sizeTable + sizeHashTables), 2*(sizeTable+sizeHashTables) + 1024},
		{"upvalue", `local hidden = string.rep("y", 100000) function get() return hidden end`, 100000, 100000 + 1024},
		{"metatable", `t = setmetatable({}, {__index = {s = string.rep("z", 100000)}})`, 100000, 100000 + 2048},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := measureSource(t, c.code, big) - base
			if n < c.min || n > c.max {
				t.Errorf("estimate %d bytes beyond a fresh state, want %d..%d", n, c.min, c.max)
			}
		})
	}
	// The walk stops counting soon after the limit.
	if n := measureSource(t, `t = {} for i = 1, 1e5 do t[i] = {} end`, 1<<20); n <= 1<<20 || n > 1<<20+1024 {
		t.Errorf("a bounded walk returned %d, want just over 1 MiB", n)
	}
}

// A plugin that hoards memory across calls, each call well within its
// budget, is found by the periodic measurement: the packet gets on_error,
// the plugin is quarantined and its states (in every worker) start afresh.
func TestPluginOverMemoryLimitIsReset(t *testing.T) {
	var logs syncBuffer
	e := New(Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)), MemoryCheckInterval: 5 * time.Millisecond})
	t.Cleanup(e.Close)
	spec := src("hoard", `
calls = 0
local hoard = {}
fw.register{hook = "input", fn = function(pkt)
  calls = calls + 1
  pkt:set_mark(calls)
  if pkt.dport == 1 then
    hoard[#hoard + 1] = string.rep(tostring(calls), 16 * 1024)
  end
end}`)
	spec.OnError = Drop
	spec.Memory = 4 << 20
	spec.QuarantineFor = 20 * time.Millisecond
	mustLoad(t, e, spec)
	w1, w2 := e.NewWorker(), e.NewWorker()
	defer w1.Close()
	defer w2.Close()
	hoard := &Packet{Hook: Input, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 1, 0)}
	plain := &Packet{Hook: Input, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, 0)}
	for i := 1; i <= 3; i++ {
		if d := w2.Run(plain); d.Mark != uint32(i) {
			t.Fatalf("worker 2, call %d: mark %d", i, d.Mark)
		}
	}

	// 16 KiB a call: over 4 MiB after about 256 calls.
	var d Decision
	deadline := time.Now().Add(20 * time.Second)
	for n := 1; ; n++ {
		d = w1.Run(hoard)
		if d.Verdict != Accept {
			t.Logf("over the limit after %d calls", n)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still running after %d calls (%+v)", n, e.Plugins())
		}
		time.Sleep(100 * time.Microsecond)
	}
	if d.Verdict != Drop || d.Errors != 1 {
		t.Fatalf("the packet that found the overrun: %v errors %d, want the on_error drop", d.Verdict, d.Errors)
	}
	st := e.Plugins()[0]
	if st.MemoryOverruns != 1 || st.MemoryBytes <= 4<<20 || st.MemoryLimit != 4<<20 {
		t.Errorf("status %+v: want 1 overrun, bytes over the 4 MiB limit", st)
	}
	if !strings.Contains(logs.String(), "plugin over its memory limit") {
		t.Errorf("no log line: %s", logs.String())
	}

	// Once the quarantine is over, both workers run fresh states: the
	// global counter starts again.
	for i, w := range []*Worker{w1, w2} {
		for d = w.Run(plain); d.Verdict == Drop; d = w.Run(plain) {
			if time.Now().After(deadline) {
				t.Fatal("still quarantined")
			}
			time.Sleep(time.Millisecond)
		}
		if d.Verdict != Accept || d.Mark != 1 {
			t.Errorf("worker %d after the reset: %v mark %d, want accept with mark 1 (a fresh state)", i+1, d.Verdict, d.Mark)
		}
	}
	if n := e.Plugins()[0].MemoryOverruns; n != 1 {
		t.Errorf("%d overruns, want 1", n)
	}
}

// The process ceiling: a call that keeps allocating is cut off when the
// heap passes the cut line, and counted as a memory failure.
func TestProcessCeilingCutsCalls(t *testing.T) {
	var logs syncBuffer
	// A cut line just above what the test process holds: the script's
	// 1 MiB strings pass it soon.
	e := New(Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)), MemoryLimit: 2 * (heapNow() + 16<<20)})
	t.Cleanup(e.Close)
	spec := src("grow", `fw.register{hook = "input", fn = function(pkt)
  local t = {}
  while true do t[#t + 1] = string.rep("x", 1048576) .. #t end
end}`)
	spec.OnError = Reject
	spec.Budget = 30 * time.Second
	mustLoad(t, e, spec)
	d := e.Process(&Packet{Hook: Input, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, 0)})
	if d.Verdict != Reject || d.Errors != 1 {
		t.Fatalf("%v errors %d, want the on_error reject", d.Verdict, d.Errors)
	}
	var memory, timeouts uint64
	for _, s := range e.Stats() {
		memory, timeouts = memory+s.Memory, timeouts+s.Timeouts
	}
	if memory != 1 || timeouts != 0 {
		t.Errorf("stats: %d memory failures, %d timeouts; want 1, 0", memory, timeouts)
	}
	if !strings.Contains(logs.String(), "near its memory ceiling") {
		t.Errorf("no log line: %s", logs.String())
	}
}

// heapNow is the heap in use now, garbage included.
func heapNow() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// state maps' byte and value limits reach scripts as set's false, reason.
func TestStateMapLimitsFromLua(t *testing.T) {
	var logs syncBuffer
	e := New(Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		StateLimits: state.Limits{MaxBytes: 2*state.EntryOverhead + 100, MaxValue: 64}})
	t.Cleanup(e.Close)
	mustLoad(t, e, src("fill", `
local m = state.map("fill")
local ok, why = m:set("long", string.rep("x", 65))
assert(ok == false and why:find("value of 65 bytes, limit 64", 1, true), tostring(why))
assert(m:set("a", string.rep("x", 60)))
ok, why = m:set("b", string.rep("x", 60))
assert(ok == false and why:find("limit " .. (2 * 80 + 100) .. " bytes", 1, true), tostring(why))
assert(m:set("b", string.rep("x", 30)))
assert(m:get("b") == string.rep("x", 30) and m:len() == 2)
fw.register{hook = "input", fn = function() end}`))
}

// A top level that allocates without end is cut off too: the load fails.
func TestProcessCeilingCutsTopLevel(t *testing.T) {
	var logs syncBuffer
	e := New(Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)), MemoryLimit: 2 * (heapNow() + 16<<20)})
	t.Cleanup(e.Close)
	err := e.Load([]PluginSpec{src("grow", `local t = {}
while true do t[#t + 1] = string.rep("x", 1048576) .. #t end`)})
	if err == nil || !strings.Contains(err.Error(), "near its memory ceiling") {
		t.Fatalf("load: %v, want a cut for memory", err)
	}
}

// A plugin whose top level already keeps more than its limit does not load.
func TestLoadOverMemoryLimit(t *testing.T) {
	e, _ := newTestEngine(t)
	spec := src("big", `big = string.rep("x", 1048576) .. string.rep("y", 1048576)
fw.register{hook = "input", fn = function() end}`)
	spec.Memory = 1 << 20
	if err := e.Load([]PluginSpec{spec}); err == nil || !strings.Contains(err.Error(), "memory limit of 1048576 bytes") {
		t.Fatalf("load: %v, want a memory limit error", err)
	}
	spec.Memory = 4 << 20
	mustLoad(t, e, spec)
}

package engine

import (
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/luafw/luafw/host/packet"
)

// Issue 18: every namespace bounded, every output bounded. These run
// hostile plugins and assert outcomes: log bytes per failure, heap,
// refusals with file:line, the per-packet budget's verdict and counts.

func forwardPkt(t testing.TB) *Packet {
	return &Packet{Hook: Forward, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1000, 80, packet.TCPSyn)}
}

// heapInUse is the Go heap in use after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// allocated is the bytes allocated so far (garbage included).
func allocated() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}

// TestTracebackTailCalls: a tail-recursive __call cut off by its budget
// used to build one traceback line per tail call after the cut (5.7 s and
// 899 MB for one call with a 1 s budget).
func TestTracebackTailCalls(t *testing.T) {
	cases := map[string]string{
		"__call": `local t = setmetatable({}, {__call = function(self, n) return self(n + 1) end})
			fw.register{hook="forward", fn=function() return t(1) end}`,
		"function": `local function f(n) return f(n + 1) end
			fw.register{hook="forward", fn=function() return f(1) end}`,
		"mutual": `local g
			local function f(n) return g(n + 1) end
			g = function(n) return f(n + 1) end
			fw.register{hook="forward", fn=function() return f(1) end}`,
	}
	for name, code := range cases {
		t.Run(name, func(t *testing.T) {
			e, buf := newTestEngine(t)
			spec := src("tail", code)
			spec.Budget = 200 * time.Millisecond
			spec.OnError = Drop
			mustLoad(t, e, spec)
			pkt := forwardPkt(t)
			e.Process(&Packet{Hook: Input, Data: pkt.Data}) // a worker, outside the measure
			a0 := allocated()
			t0 := time.Now()
			d := e.Process(pkt)
			took := time.Since(t0)
			alloc := allocated() - a0
			if d.Verdict != Drop || d.Errors != 1 {
				t.Errorf("verdict %v errors %d, want the on_error drop", d.Verdict, d.Errors)
			}
			if took > spec.Budget+150*time.Millisecond {
				t.Errorf("one call took %v with a budget of %v", took, spec.Budget)
			}
			if alloc > 64<<20 {
				t.Errorf("one call allocated %d MiB", alloc>>20)
			}
			t.Logf("%v, %d KiB allocated, log %d bytes", took, alloc>>10, len(buf.String()))
		})
	}
}

// newBudgetEngine is newTestEngine with a packet budget.
func newBudgetEngine(t testing.TB, packetBudget time.Duration) (*Engine, *syncBuffer) {
	t.Helper()
	var buf syncBuffer
	e := New(Options{Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
		PacketBudget: packetBudget})
	t.Cleanup(e.Close)
	return e, &buf
}

// TestFailureTextBounded: a callback's failure text is cut before it is
// formatted. Before: the whole value, %q-quoted, per packet (400 MiB of log
// for 20 packets of 4 MiB).
func TestFailureTextBounded(t *testing.T) {
	const big = `local big = string.rep("A", 1024 * 1024) big = big .. big big = big .. big` // 4 MiB
	const bin = `local big = string.rep("\0\1\255\"", 256 * 1024) big = big .. big big = big .. big`
	cases := map[string]string{
		"return string":        big + ` fw.register{hook="forward", fn=function() return big end}`,
		"return binary":        bin + ` fw.register{hook="forward", fn=function() return big end}`,
		"error string":         big + ` fw.register{hook="forward", fn=function() error(big) end}`,
		"error binary":         bin + ` fw.register{hook="forward", fn=function() error(big, 0) end}`,
		"error table":          big + ` fw.register{hook="forward", fn=function() error(setmetatable({}, {__tostring = function() return big end})) end}`,
		"return table":         big + ` fw.register{hook="forward", fn=function() return {big} end}`,
		"error number":         ` fw.register{hook="forward", fn=function() error(1e308) end}`,
		"error in concat":      big + ` fw.register{hook="forward", fn=function() return big .. {} end}`,
		"long name and return": big + ` fw.register{hook="forward", name=string.rep("n", 128), fn=function() return big end}`,
		"binary name, timeout": bin + ` fw.register{hook="forward", name=string.rep("\0", 128), fn=function() while true do end end}`,
	}
	for name, code := range cases {
		t.Run(name, func(t *testing.T) {
			e, buf := newTestEngine(t)
			spec := src("loud", code)
			spec.Budget = 50 * time.Millisecond
			spec.QuarantineAfter = 3 // the quarantine line quotes the reason too
			mustLoad(t, e, spec)
			start := len(buf.String())
			const packets = 5
			for range packets {
				if d := e.Process(forwardPkt(t)); d.Errors != 1 {
					t.Errorf("errors %d, want 1", d.Errors)
				}
			}
			out := buf.String()[start:]
			lines := strings.Split(strings.TrimSpace(out), "\n")
			longest := 0
			for _, l := range lines {
				longest = max(longest, len(l))
			}
			if longest > 2048 {
				t.Errorf("a log line of %d bytes: %.300s", longest, out)
			}
			if len(out) > packets*2048 {
				t.Errorf("%d bytes of log for %d packets", len(out), packets)
			}
			t.Logf("%d lines, longest %d bytes, %d bytes for %d packets", len(lines), longest, len(out), packets)
		})
	}
}

// TestRegistrationsBounded: registrations and callback names are refused at
// load with file:line past their limits; the heap stays put.
func TestRegistrationsBounded(t *testing.T) {
	over := fmt.Sprint(MaxRegistrations + 1)
	cases := []struct {
		name, code, line, want string
	}{
		{"loop, five hooks", "local hooks = fw.hooks\n" +
			"for i = 1, 60000 do\n  fw.register{hook=hooks, fn=function() end}\nend", ":3:", "at most 256 callbacks"},
		{"one over", "for i = 1, " + over + " do fw.register{hook=\"forward\", name=\"n\"..i, fn=function() end} end", ":1:", "at most 256 callbacks"},
		{"long name", "\n\nfw.register{hook=\"forward\", name=string.rep(\"x\", 200 * 1024), fn=function() end}", ":3:", "limit of 128 bytes"},
		{"name just over", "fw.register{hook=\"forward\", name=string.rep(\"x\", 129), fn=function() end}", ":1:", "limit of 128 bytes"},
		{"huge unknown field", "\nfw.register{hook=\"forward\", [string.rep(\"k\", 1024*1024)]=1, fn=function() end}", ":2:", "unknown field"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, _ := newTestEngine(t)
			before := heapInUse()
			err := e.Load([]PluginSpec{src("many", c.code)})
			after := heapInUse()
			if err == nil {
				t.Fatal("loaded")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "many.lua"+c.line) || !strings.Contains(msg, c.want) {
				t.Errorf("error %.300q, want many.lua%s ... %s", msg, c.line, c.want)
			}
			if len(msg) > 1024 {
				t.Errorf("error of %d bytes", len(msg))
			}
			if after > before+16<<20 {
				t.Errorf("heap grew %d MiB", (after-before)>>20)
			}
		})
	}
	// At the limit it loads.
	e, _ := newTestEngine(t)
	mustLoad(t, e, src("many", `for i = 1, 256 do fw.register{hook="forward", name=string.rep("x", 120)..i, fn=function() end} end`))
}

// TestStateObjectsAtLoad: state objects are opened while a plugin loads,
// at most MaxStateObjects per plugin; a callback may reopen those and no
// others, in either scope; names are capped.
func TestStateObjectsAtLoad(t *testing.T) {
	t.Run("runtime creation refused", func(t *testing.T) {
		for _, open := range []string{
			`state.map("m" .. n)`, `state.counter("c" .. n)`, `state.bucket("b" .. n, {rate=1, burst=1})`,
			`state.map("m" .. n, {scope="cluster"})`, `state.counter("c" .. n, {scope="cluster"})`,
			`state.bucket("b" .. n, {rate=1, burst=1, scope="cluster"})`,
			`state.map(string.rep("x", 200*1024) .. n)`,
		} {
			e, buf := newTestEngine(t)
			spec := src("fresh", `local n = 0
				local m = state.map("known")
				fw.register{hook="forward", fn=function() n = n + 1; `+open+`; return fw.DROP end}`)
			mustLoad(t, e, spec)
			before := len(e.State().Stats())
			for range 50 {
				if d := e.Process(forwardPkt(t)); d.Verdict != Accept || d.Errors != 1 {
					t.Fatalf("%s: %v with %d errors, want the on_error accept", open, d.Verdict, d.Errors)
				}
			}
			if n := len(e.State().Stats()); n != before {
				t.Errorf("%s: %d state objects after 50 packets, %d before", open, n, before)
			}
			if out := buf.String(); !strings.Contains(out, "created while the plugin loads") && !strings.Contains(out, "limit of 128 bytes") {
				t.Errorf("%s: log %.500s", open, out)
			}
		}
	})
	t.Run("reopen at run time", func(t *testing.T) {
		e, _ := newTestEngine(t)
		mustLoad(t, e, src("reopen", `state.map("m") state.counter("c", {scope="cluster"}) state.bucket("b", {rate=1, burst=5})
			fw.register{hook="forward", fn=function()
				state.map("m"):set("k", 1)
				state.counter("c", {scope="cluster"}):incr()
				return state.bucket("b", {rate=1, burst=5}):take("k")
			end}`))
		if d := e.Process(forwardPkt(t)); d.Verdict != Accept || d.Errors != 0 {
			t.Fatalf("%v with %d errors", d.Verdict, d.Errors)
		}
	})
	for _, c := range []struct{ name, code, line, want string }{
		{"too many at load", "for i = 1, 1000 do\n  state.map(\"m\" .. i)\nend", ":2:", "at most 32 state objects"},
		{"mixed kinds", "for i = 1, 20 do state.counter(\"c\" .. i) end\nfor i = 1, 20 do state.map(\"m\" .. i, {scope=\"cluster\"}) end", ":2:", "at most 32 state objects"},
		{"long name", "\nstate.bucket(string.rep(\"b\", 200*1024), {rate=1, burst=1})", ":2:", "limit of 128 bytes"},
		{"counter name just over", "local x = 1\nstate.counter(string.rep(\"c\", 129))", ":2:", "limit of 128 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, _ := newTestEngine(t)
			err := e.Load([]PluginSpec{src("objs", c.code)})
			if err == nil || !strings.HasPrefix(err.Error(), "objs.lua"+c.line) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %.300v, want objs.lua%s ... %s", err, c.line, c.want)
			}
		})
	}
	t.Run("tags", func(t *testing.T) {
		e, _ := newTestEngine(t)
		mustLoad(t, e, src("tags", `fw.register{hook="forward", fn=function(pkt) pkt:tag(string.rep("t", 129)) end}`))
		if d := e.Process(forwardPkt(t)); d.Errors != 1 || len(d.Tags) != 0 {
			t.Fatalf("errors %d tags %d, want the tag refused", d.Errors, len(d.Tags))
		}
	})
	t.Run("per engine", func(t *testing.T) {
		// Reloads under fresh names: the store keeps what they made, so the
		// engine refuses more than MaxEngineStateObjects.
		e, _ := newTestEngine(t)
		var err error
		for i := 0; i < MaxEngineStateObjects/MaxStateObjects+2 && err == nil; i++ {
			err = e.Load([]PluginSpec{src("gen", fmt.Sprintf(`for i = 1, %d do state.counter("g%d." .. i) end`, MaxStateObjects, i))})
		}
		if err == nil || !strings.Contains(err.Error(), "state objects, the limit") {
			t.Fatalf("err %v", err)
		}
	})
}

// spin is Lua that keeps a callback busy for ms milliseconds.
func spin(ms float64) string {
	return fmt.Sprintf(`local t0 = time.now() while time.now() - t0 < %g do end`, ms/1000)
}

// TestPacketBudget: the Lua callbacks of a hook share one budget per
// packet. When it runs out, the running callback is cut and the rest are
// not run: each gives its plugin's on_error (the first that is not accept
// wins), counted in OverBudget, not as the plugins' failures.
func TestPacketBudget(t *testing.T) {
	const pb = 20 * time.Millisecond
	slack := 80 * time.Millisecond // a shared 2-core machine running other tests; without the packet budget the first case takes 240 ms
	many := func(n int, ms float64) string {
		return fmt.Sprintf(`for i = 1, %d do fw.register{hook="forward", name="slow"..i, fn=function() %s end} end`, n, spin(ms))
	}
	cases := []struct {
		name  string
		specs func() []PluginSpec
		want  Verdict
		by    string
	}{
		{"200 short callbacks, next accepts", func() []PluginSpec {
			s := src("slow", many(200, 1.2))
			s.Budget = time.Second // os.clock is CPU time: on a busy machine a call takes longer
			return []PluginSpec{s}
		}, Accept, ""},
		{"then a drop plugin's on_error", func() []PluginSpec {
			s := src("slow", many(40, 1.2))
			s.Budget = time.Second
			g := src("guard", `fw.register{hook="forward", fn=function() return fw.ACCEPT end}`)
			g.OnError = Drop
			return []PluginSpec{s, g}
		}, Drop, "guard"},
		{"one endless callback with a long budget", func() []PluginSpec {
			s := src("loop", `fw.register{hook="forward", fn=function() while true do end end}`)
			s.Budget = time.Second
			s.OnError = Reject
			return []PluginSpec{s}
		}, Reject, "loop"},
		{"endless callback that catches the cut", func() []PluginSpec {
			s := src("catch", `fw.register{hook="forward", fn=function() for i = 1, 1e9 do pcall(function() while true do end end) end end}`)
			s.Budget = time.Second
			d := src("after", `fw.register{hook="forward", fn=function() return fw.DROP end}`)
			d.OnError = Drop
			return []PluginSpec{s, d}
		}, Drop, "after"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, buf := newBudgetEngine(t, pb)
			mustLoad(t, e, c.specs()...)
			goRan := 0
			if err := e.RegisterFunc(Forward, PriorityFilter+1, "go-after", func(*Ctx) Verdict { goRan++; return Accept }); err != nil {
				t.Fatal(err)
			}
			const packets = 4
			for range packets {
				t0 := time.Now()
				d := e.Process(forwardPkt(t))
				took := time.Since(t0)
				if took > pb+slack {
					t.Errorf("packet took %v with a packet budget of %v", took, pb)
				}
				if d.Verdict != c.want || d.By != c.by || d.OverBudget == 0 || d.Errors != 0 {
					t.Errorf("%v by %q, over budget %d, errors %d; want %v by %q over budget, no errors", d.Verdict, d.By, d.OverBudget, d.Errors, c.want, c.by)
				}
			}
			var over, fails uint64
			for _, cs := range e.Stats() {
				over += cs.OverBudget
				fails += cs.Errors + cs.Timeouts
			}
			if over < packets || fails != 0 {
				t.Errorf("stats: %d over budget, %d failures", over, fails)
			}
			if c.want == Accept && goRan != packets {
				t.Errorf("the Go callback ran %d times for %d packets", goRan, packets)
			}
			if !strings.Contains(buf.String(), "packet budget ran out") {
				t.Errorf("not logged")
			}
		})
	}
	t.Run("default", func(t *testing.T) {
		e, _ := newTestEngine(t)
		s := src("a", "")
		s.Budget = 2 * time.Millisecond
		mustLoad(t, e, s)
		if b := e.gen.Load().packetBudget; b != 20*time.Millisecond {
			t.Errorf("default packet budget %v", b)
		}
		s.Budget = 100 * time.Millisecond
		mustLoad(t, e, s)
		if b := e.gen.Load().packetBudget; b != 100*time.Millisecond {
			t.Errorf("packet budget %v with a plugin budget of 100ms", b)
		}
	})
}

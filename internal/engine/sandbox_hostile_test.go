package engine

import (
	"context"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/luafw/luafw/internal/sandbox"

	lua "github.com/luafw/luafw/lua"
)

// Hostile calls into builtins: each runs in a callback with a 2 ms budget
// and on_error drop, through the engine. What is checked: the outcome (the
// on_error drop for a refused or cut-off call, or the right result for a
// call that is now cheap), that the call returns promptly (a generous
// bound; the measured time is logged), and that it allocated less than
// hostileAllocBound.

const hostileAllocBound = 64 << 20

type hostileOutcome int

const (
	refused  hostileOutcome = iota // an error or a cut-off: the on_error drop
	cutOff                         // only the budget can stop it: a timeout
	computed                       // completes, and its own asserts pass: accept
)

// hostileSetup runs at the top level of the cases whose code names BIGN
// or BIGS: big tables a callback then works on, built in Go by the test
// module bigtable (a Lua loop building them can overrun the 2 s load
// budget on a busy machine).
var hostileSetup = map[string]string{
	"BIGN": "BIGN = bigtable(30000, 0)\n",
	"BIGS": "BIGS = bigtable(2000, 1024)\n",
}

// bigTable is the test module bigtable(n, size): a list of n numbers
// (size 0) in a scrambled order, or of n strings of size bytes.
var bigTable = Module{Name: "bigtable", Open: func(L *lua.LState) lua.LValue {
	return L.NewFunction(func(L *lua.LState) int {
		n, size := L.CheckInt(1), L.CheckInt(2)
		t := L.CreateTable(n, 0)
		s := lua.LString(strings.Repeat("x", size))
		for i := 1; i <= n; i++ {
			if size == 0 {
				t.RawSetInt(i, lua.LNumber((i*7919)%n))
			} else {
				t.RawSetInt(i, s)
			}
		}
		L.Push(t)
		return 1
	})
}}

var hostileCases = []struct {
	name string
	code string
	want hostileOutcome
}{
	// string.rep
	{"rep-empty-huge", `assert(string.rep("", 1e15) == "")`, computed},
	{"rep-empty-sep-huge", `assert(string.rep("", 1e15, "") == "")`, computed},
	{"rep-huge", `local s = string.rep("x", 1e15)`, refused},
	{"rep-empty-nonempty-sep", `local s = string.rep("", 1e15, "x")`, refused},
	{"rep-sep", `local s = string.rep("ab", 2^31, ",")`, refused},
	{"rep-one-over", `local s = ("x"):rep(1024 * 1024 + 1)`, refused},
	{"rep-of-mib", `local s = string.rep(string.rep("x", 1024 * 1024), 2)`, refused},
	{"rep-ok", `assert(string.rep("ab", 64 * 1024, ",") == ("ab,"):rep(64 * 1024 - 1) .. "ab")`, computed},
	// string.format
	{"format-v", `local s = string.format("%v", {})`, refused},
	{"format-p", `local s = string.format("%p", {})`, refused},
	{"format-T", `local s = string.format("%T", 1)`, refused},
	{"format-b", `local s = string.format("%b", 5)`, refused},
	{"format-width", `local s = string.format("%100d", 1)`, refused},
	{"format-flags", `local s = string.format("%------d", 1)`, refused},
	{"format-many-s", `local s = string.format(string.rep("%s", 2000), unpack(BIGS))`, refused},
	{"format-two-big", `local b = string.rep("x", 600 * 1024); local s = string.format("%s%s", b, b)`, refused},
	{"format-literal", `local s = string.format(string.rep("x", 1024 * 1024) .. "%d", 1)`, refused},
	{"format-floats", `local t = {} for i = 1, 4000 do t[i] = 1e308 end
		local s = string.format(string.rep("%99.99f", 4000), unpack(t))`, refused},
	{"format-tostring-loops", `local s = string.format("%s", setmetatable({}, {__tostring = function() while true do end end}))`, cutOff},
	// table.concat
	{"concat-big", `local s = table.concat(BIGS)`, refused},
	{"concat-sep", `local s = table.concat({1, 2, 3, 4}, string.rep(",", 400 * 1024))`, refused},
	{"concat-range", `local s = table.concat({}, "x", 1, 1e15)`, refused},
	{"concat-numbers", `local s = table.concat(BIGN, string.rep(",", 40))`, refused},
	// table growth
	{"insert-far", `local t = {} table.insert(t, 6e7, 1) assert(t[6e7] == 1 and #t == 0)`, computed},
	{"index-far", `local t = {} t[67108000] = 1 assert(t[67108000] == 1)`, computed},
	{"rawset-far", `local t = {} rawset(t, 67108000, 1) assert(t[67108000] == 1)`, computed},
	{"insert-negative", `local t = {1, 2, 3} table.insert(t, -1e15, 0)`, cutOff},
	{"array-churn", `for i = 1, 1e9 do local t = {} t[65535] = i end`, cutOff},
	// big tables
	// (A single sort of BIGN may finish before a busy machine's watchdog
	// looks; TestLongBuiltinsHonourTheBudget checks the cut inside one call.)
	{"sort", `while true do table.sort(BIGN) end`, cutOff},
	{"sort-comparator", `while true do table.sort(BIGN, function(a, b) return a > b end) end`, cutOff},
	{"unpack-huge", `local n = select("#", unpack({}, 1, 1e8))`, refused},
	{"unpack-wide", `local n = select("#", unpack({}, -1e15, 1e15))`, refused},
	{"unpack-many", `assert(select("#", unpack(BIGN, 1, 1000)) == 1000)`, computed},
	{"byte-all", `local n = select("#", string.byte(BIGS[1] .. string.rep("y", 1024 * 1024 - 1024), 1, -1))`, refused},
	// os
	{"date-long-format", `local s = os.date(string.rep("%c", 200000))`, refused},
	{"date-format-ok", `assert(#os.date(string.rep("%c", 128)) < 4096)`, computed},
	{"time-huge-year", `assert(os.time{year = 1e300, month = 1, day = 1} == nil)`, computed},
	{"time-nan", `assert(os.time{year = 0/0, month = 1, day = 1} == nil)`, computed},
	{"time-string-year", `assert(os.time{year = "1e300", month = 1, day = 1} == nil)`, computed},
	{"time-big-month", `assert(type(os.time{year = 2020, month = 1e9, day = 1}) == "number")`, computed},
	// pcall cannot hide a cut-off
	{"pcall-loop", `pcall(function() while true do end end)`, cutOff},
	{"pcall-sort", `while true do pcall(table.sort, BIGN) end`, cutOff},
	{"xpcall-sort", `while true do xpcall(function() table.sort(BIGN) end, function(e) return e end) end`, cutOff},
	{"pcall-refused", `assert(not pcall(string.rep, "x", 1e9))`, computed},
	// tostring
	{"tostring", `assert(tostring({}):match("^table: 0x%x+$") and tostring(print):match("^function: 0x%x+$"))`, computed},
	{"tostring-huge-number", `assert(tostring(1e308) == "1e+308")`, computed},
}

func TestHostileBuiltins(t *testing.T) {
	for _, tc := range hostileCases {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuffer
			e := New(Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Modules: []Module{bigTable}})
			t.Cleanup(e.Close)
			var setup string
			for name, code := range hostileSetup {
				if strings.Contains(tc.code, name) {
					setup += code
				}
			}
			spec := src(tc.name, setup+`fw.register{hook="input", fn=function(pkt)
				if pkt.dport ~= 2 then return fw.ACCEPT end
				`+tc.code+`
				return fw.ACCEPT
			end}`)
			spec.OnError = Drop
			spec.Budget = 2 * time.Millisecond
			if raceEnabled {
				// The race detector slows the honest cases (rep-ok: 7 ms)
				// past 2 ms; the hostile ones run until cut either way.
				spec.Budget = 20 * time.Millisecond
			}
			mustLoad(t, e, spec)
			w := e.NewWorker()
			defer w.Close()
			if d := w.Run(&Packet{Hook: Input, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 1, 0)}); d.Verdict != Accept {
				t.Fatalf("warm-up: %v", d.Verdict)
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			d := w.Run(&Packet{Hook: Input, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, 0)})
			took := time.Since(start)
			runtime.ReadMemStats(&after)
			alloc := after.TotalAlloc - before.TotalAlloc
			var st CallbackStats
			for _, s := range e.Stats() {
				st = s
			}
			t.Logf("%v in %v, allocated %d KiB, errors %d timeouts %d", d.Verdict, took, alloc>>10, st.Errors, st.Timeouts)
			switch tc.want {
			case computed:
				if d.Verdict != Accept || d.Errors != 0 {
					t.Errorf("%v with %d errors, want accept; log: %s", d.Verdict, d.Errors, lastLines(logs.String(), 2))
				}
			case refused, cutOff:
				if d.Verdict != Drop || d.Errors != 1 {
					t.Errorf("%v with %d errors, want the on_error drop", d.Verdict, d.Errors)
				}
				if tc.want == cutOff && st.Timeouts != 1 {
					t.Errorf("timeouts = %d, want 1 (the call cannot finish)", st.Timeouts)
				}
			}
			if took > time.Second {
				t.Errorf("took %v", took)
			}
			if alloc > hostileAllocBound {
				t.Errorf("allocated %d MiB, bound %d MiB", alloc>>20, hostileAllocBound>>20)
			}
		})
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestLongBuiltinsHonourTheBudget calls long builtins directly (not from
// Lua code, so the VM's own check between instructions never runs) with
// the call's context already cancelled, as the watchdog leaves it: each
// must notice within its work and raise the context's error.
func TestLongBuiltinsHonourTheBudget(t *testing.T) {
	L := sandbox.NewState()
	defer L.Close()
	if err := L.DoString(`
		NUMS = {} for i = 1, 30000 do NUMS[i] = (i * 7919) % 30000 end
		STRS = {} for i = 1, 30000 do STRS[i] = "x" end
		HASH = {} for i = 1, 80000 do HASH[i] = i end
		FMT = string.rep("%d", 2000)
		ARGS = {} for i = 1, 2000 do ARGS[i] = i end`); err != nil {
		t.Fatal(err)
	}
	g := func(path string) lua.LValue {
		mod, name, _ := strings.Cut(path, ".")
		return L.GetField(L.GetGlobal(mod), name)
	}
	cases := []struct {
		fn   string
		args []lua.LValue
	}{
		{"table.sort", []lua.LValue{L.GetGlobal("NUMS")}},
		{"table.concat", []lua.LValue{L.GetGlobal("STRS")}},
		{"table.maxn", []lua.LValue{L.GetGlobal("HASH")}},
		{"table.insert", []lua.LValue{L.GetGlobal("NUMS"), lua.LNumber(-1e15), lua.LNumber(0)}},
		// (A list in the array part is shifted with one copy: no loop to cut.)
		{"table.remove", []lua.LValue{L.GetGlobal("HASH"), lua.LNumber(1)}},
		{"string.rep", []lua.LValue{lua.LString("x"), lua.LNumber(1 << 20)}},
		{"string.format", append([]lua.LValue{L.GetGlobal("FMT")}, func() (a []lua.LValue) {
			for i := 0; i < 2000; i++ {
				a = append(a, lua.LNumber(i))
			}
			return a
		}()...)},
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, c := range cases {
		L.SetContext(ctx)
		L.Push(g(c.fn))
		for _, a := range c.args {
			L.Push(a)
		}
		err := L.PCall(len(c.args), lua.MultRet, nil)
		L.RemoveContext()
		L.SetTop(0)
		if err == nil || !strings.Contains(err.Error(), context.Canceled.Error()) {
			t.Errorf("%s: err = %v, want the cancelled context's error", c.fn, err)
		}
	}
}

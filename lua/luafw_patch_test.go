package lua

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/luafw/luafw/lua/parse"
)

// Tests of the luafw patches (see LUAFW-PATCHES.md).

func TestUserDataIndex(t *testing.T) {
	L := NewState()
	defer L.Close()
	ud := L.NewUserData()
	calls := 0
	ud.Index = func(L *LState, u *LUserData, key string) LValue {
		calls++
		if u != ud {
			t.Errorf("Index got another userdata")
		}
		if key == "boom" {
			L.RaiseError("no field %q", key)
		}
		return LString("v:" + key)
	}
	mt := L.NewTable()
	mt.RawSetString("__index", L.NewFunction(func(L *LState) int {
		L.Push(LString("meta"))
		return 1
	}))
	ud.Metatable = mt
	L.SetGlobal("u", ud)
	for _, c := range []struct{ code, want string }{
		{`return u.name`, "v:name"},
		{`return u["na".."me"]`, "v:name"},
		{`local k = "x"; return u[k]`, "v:x"},
		{`return u[1]`, "meta"}, // not a string key: the metatable answers
		{`return u[true]`, "meta"},
	} {
		if err := L.DoString(c.code); err != nil {
			t.Fatalf("%s: %v", c.code, err)
		}
		if got := L.Get(-1).String(); got != c.want {
			t.Errorf("%s = %q, want %q", c.code, got, c.want)
		}
		L.Pop(1)
	}
	// A method call goes through Index too (OP_SELF).
	ud.Index = func(L *LState, u *LUserData, key string) LValue {
		return L.NewFunction(func(L *LState) int {
			L.Push(LString(key + ":" + L.CheckUserData(1).Value.(string)))
			return 1
		})
	}
	ud.Value = "self"
	if err := L.DoString(`return u:hello()`); err != nil {
		t.Fatal(err)
	}
	if got := L.Get(-1).String(); got != "hello:self" {
		t.Errorf("u:hello() = %q", got)
	}
	L.Pop(1)
	if calls != 3 {
		t.Errorf("Index called %d times, want 3", calls)
	}
	if got := L.GetField(ud, "x"); got.Type() != LTFunction {
		t.Errorf("GetField(u, \"x\") = %v, want Index's function", got)
	}
}

func TestUserDataIndexError(t *testing.T) {
	L := NewState()
	defer L.Close()
	ud := L.NewUserData()
	ud.Index = func(L *LState, _ *LUserData, key string) LValue {
		L.RaiseError("no field %q", key)
		return nil
	}
	L.SetGlobal("u", ud)
	err := L.DoString("local x = 1\nreturn u.missing")
	if err == nil || !strings.Contains(err.Error(), `no field "missing"`) || !strings.Contains(err.Error(), ":2:") {
		t.Fatalf("err = %v, want the Index error at line 2", err)
	}
}

func TestInterruptFlag(t *testing.T) {
	L := NewState()
	defer L.Close()
	var flag atomic.Int32
	L.SetInterrupt(&flag)
	if err := L.DoString(`local n = 0 for i = 1, 1000 do n = n + i end assert(n == 500500)`); err != nil {
		t.Fatalf("ordinary code under a clear flag: %v", err)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		flag.Store(1)
	}()
	start := time.Now()
	err := L.DoString(`while true do end`)
	if err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("endless loop: err = %v, want interrupted", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("interrupt took %v", d)
	}
	if !L.Interrupted() {
		t.Errorf("Interrupted() is false while the flag is set")
	}
	flag.Store(0)
	if err := L.DoString(`return 1`); err != nil {
		t.Fatalf("after clearing the flag: %v", err)
	}
	// A coroutine's thread shares the flag.
	th, _ := L.NewThread()
	if th.intr != &flag {
		t.Errorf("NewThread did not share the interrupt flag")
	}
	L.SetInterrupt(nil)
	if L.Interrupted() {
		t.Errorf("Interrupted() without a flag")
	}
}

func TestConcatCheck(t *testing.T) {
	L := NewState()
	defer L.Close()
	var seen []int
	L.SetConcatCheck(func(L *LState, n int) {
		seen = append(seen, n)
		if n > 3<<20 {
			L.RaiseError("concat of %d bytes refused", n)
		}
	})
	err := L.DoString(`
local small = "a" .. "b" .. 1
assert(small == "ab1")
local s = string.rep("x", 1048576)
local t = s .. s        -- 2 MiB: checked, allowed
assert(#t == 2097152)
local u = t .. t        -- 4 MiB: refused
`)
	if err == nil || !strings.Contains(err.Error(), "concat of 4194304 bytes refused") {
		t.Fatalf("err = %v, want the 4 MiB concat refused", err)
	}
	if len(seen) != 2 || seen[0] != 2<<20 || seen[1] != 4<<20 {
		t.Errorf("check saw %v, want [2 MiB 4 MiB] (small results are not checked)", seen)
	}
}

// luafw patch 4: Options.MaxArrayIndex bounds the array part of the tables
// of one state; other states keep the package variable's bound.
func TestPerStateMaxArrayIndex(t *testing.T) {
	before := MaxArrayIndex
	small := NewState(Options{MaxArrayIndex: 16})
	defer small.Close()
	mid := NewState(Options{MaxArrayIndex: 1024})
	defer mid.Close()
	def := NewState()
	defer def.Close()
	if MaxArrayIndex != before {
		t.Fatalf("package MaxArrayIndex changed: %d", MaxArrayIndex)
	}
	// `#` (gopher-lua's, array part only) shows where the array part
	// ends; every key is still readable, whichever part holds it.
	const code = `
		local n = ...
		local function fill(t) for i = 1, n do t[i] = i end return t end
		local a = fill({})                              -- OP_NEWTABLE
		local b = fill(setmetatable({}, {}))
		local c = coroutine.wrap(function() return fill({}) end)()
		local function va(...) return fill(arg) end     -- vararg arg table
		local d = va(1, 2)
		local sum = 0
		for _, t in ipairs({a, b, c, d}) do
			for i = 1, n do sum = sum + t[i] end
			local cnt = 0
			for k in pairs(t) do if type(k) == "number" then cnt = cnt + 1 end end
			assert(cnt == n, "pairs " .. cnt)
		end
		return #a, #b, #c, #d, sum`
	for _, c := range []struct {
		L    *LState
		want int
	}{{small, 15}, {mid, 1024 - 1}, {def, 3000}} {
		if err := c.L.DoString(`return (function(...) ` + code + ` end)(3000)`); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 4; i++ {
			if got := int(c.L.Get(i).(LNumber)); got != c.want {
				t.Errorf("bound %d: #t%d = %d, want %d", c.L.Options.MaxArrayIndex, i, got, c.want)
			}
		}
		if got := c.L.Get(5); got != LNumber(4*3000*3001/2) {
			t.Errorf("bound %d: sum %v", c.L.Options.MaxArrayIndex, got)
		}
		c.L.SetTop(0)
	}
	for _, c := range []struct {
		L    *LState
		want int
	}{{small, 16}, {mid, 1024}, {def, before}} {
		if got := c.L.NewTable().MaxArrayIndex(); got != c.want {
			t.Errorf("NewTable bound %d, want %d", got, c.want)
		}
		if got := c.L.CreateTable(0, 0).MaxArrayIndex(); got != c.want {
			t.Errorf("CreateTable bound %d, want %d", got, c.want)
		}
		if got := c.L.G.Global.MaxArrayIndex(); got != c.want {
			t.Errorf("globals bound %d, want %d", got, c.want)
		}
	}
	// A table keeps its bound when another state writes it.
	tb := small.NewTable()
	def.SetGlobal("shared", tb)
	if err := def.DoString(`for i = 1, 100 do shared[i] = i end`); err != nil {
		t.Fatal(err)
	}
	if tb.Len() != 15 || tb.RawGet(LNumber(100)) != LNumber(100) || tb.RawGet(LNumber(50)) != LNumber(50) {
		t.Errorf("shared table: len %d, [100]=%v", tb.Len(), tb.RawGet(LNumber(100)))
	}
}

// luafw patch 5: an error caught by pcall, xpcall or a coroutine closes
// the upvalues of the unwound frames only. The scripts' expected outputs
// are Lua 5.1.5's (lua5.1 -e "io.write(dofile(...))").
func TestErrorClosesOnlyUnwoundUpvalues(t *testing.T) {
	for _, name := range []string{"luafw_upvalues1", "luafw_upvalues2"} {
		want, err := os.ReadFile("testdata/" + name + ".want")
		if err != nil {
			t.Fatal(err)
		}
		L := NewState()
		if err := L.DoFile("testdata/" + name + ".lua"); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := L.ToString(-1); got != string(want) {
			t.Errorf("%s:\ngot:\n%s\nwant (Lua 5.1):\n%s", name, got, want)
		}
		L.Close()
	}
	// The case of yuin/gopher-lua#448, through the Go API.
	L := NewState()
	defer L.Close()
	if err := L.DoString(`
		local v = "accept"; local function set(x) v = x end
		pcall(function() error("x") end); set("drop"); V = v`); err != nil {
		t.Fatal(err)
	}
	if got := L.GetGlobal("V"); got != LString("drop") {
		t.Errorf("V = %v, want drop", got)
	}
}

// luafw patch 6: hostile chunks are refused (or compiled) quickly, never
// with a Go fatal error. Each runs in a child process, so a stack overflow
// fails this test instead of killing the run.
var hostileChunks = []struct {
	name string
	code func() string // built in the child only (issues.lua runs under SetMx)
	want string        // "" compiles, else a substring of the error
}{
	{"tables", func() string { return "return " + strings.Repeat("{", 1e5) + strings.Repeat("}", 1e5) }, "chunk has too many syntax levels"},
	{"calls", func() string { return "return " + strings.Repeat("f(", 1e5) + strings.Repeat(")", 1e5) }, "chunk has too many syntax levels"},
	{"parens", func() string { return "return " + strings.Repeat("(", 1e6) + "1" + strings.Repeat(")", 1e6) }, "chunk has too many syntax levels"},
	{"functions", func() string { return strings.Repeat("function f() ", 1e5) + strings.Repeat("end ", 1e5) }, "chunk has too many syntax levels"},
	{"ifs", func() string { return strings.Repeat("if x then ", 1e5) + strings.Repeat("end ", 1e5) }, "<string>:1: chunk has too many syntax levels"},
	{"whiles", func() string { return strings.Repeat("while x do ", 1e5) + strings.Repeat("end ", 1e5) }, "chunk has too many syntax levels"},
	{"dos", func() string { return strings.Repeat("do\n", 1e5) + strings.Repeat("end ", 1e5) }, "<string>:201: chunk has too many syntax levels"},
	{"repeats", func() string { return strings.Repeat("repeat ", 1e5) + strings.Repeat("until x ", 1e5) }, "chunk has too many syntax levels"},
	{"not", func() string { return "return " + strings.Repeat("not ", 1e6) + "1" }, "chunk has too many syntax levels"},
	{"neg", func() string { return "return " + strings.Repeat("- ", 1e6) + "1" }, "chunk has too many syntax levels"},
	{"concat", func() string { return "return x" + strings.Repeat("..x", 1e5) }, "chunk has too many syntax levels"},
	{"pow", func() string { return "return 2" + strings.Repeat("^2", 1e5) }, "chunk has too many syntax levels"},
	{"plus-5e6", func() string { return "return 1" + strings.Repeat("+1", 5e6) }, "expression too long"},
	{"fields-1e6", func() string { return "return a" + strings.Repeat(".b", 1e6) }, "expression too long"},
	{"plus-65536", func() string { return "return 1" + strings.Repeat("+1", 1<<16) }, ""},
	{"fields-65536", func() string { return "return a" + strings.Repeat(".b", 1<<16) }, ""},
	{"elseif-20000", func() string { return "if x then " + strings.Repeat("elseif x then ", 20000) + "end" }, ""},
	{"string-10MB", func() string { return `return "` + strings.Repeat("a", 10<<20) + `"` }, ""},
	{"constructor-1e6", func() string { return "return {" + strings.Repeat("1,", 1e6) + "}" }, ""},
	{"statements-2e5", func() string { return strings.Repeat("a = 1\n", 2e5) }, ""},
	// What Lua 5.1 accepts stays accepted: 196 levels of each kind.
	{"ifs-196", func() string { return strings.Repeat("if x then ", 196) + strings.Repeat("end ", 196) }, ""},
	{"tables-196", func() string { return "return " + strings.Repeat("{", 196) + strings.Repeat("}", 196) }, ""},
	{"concat-196", func() string { return "return x" + strings.Repeat("..x", 196) }, ""},
	{"mixed-196", func() string { return "return " + strings.Repeat("-(", 98) + "1" + strings.Repeat(")", 98) }, ""},
}

func TestHostileChunks(t *testing.T) {
	if name := os.Getenv("LUAFW_HOSTILE_CHUNK"); name != "" {
		for _, c := range hostileChunks {
			if c.name == name {
				L := NewState()
				_, err := L.LoadString(c.code())
				fmt.Printf("RESULT:%v\n", err)
				return
			}
		}
		t.Fatalf("no chunk %q", name)
	}
	for _, c := range hostileChunks {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHostileChunks$")
		cmd.Env = append(os.Environ(), "LUAFW_HOSTILE_CHUNK="+c.name)
		t0 := time.Now()
		out, err := cmd.CombinedOutput()
		d := time.Since(t0)
		if err != nil {
			t.Errorf("%s: child failed (%v): %.500s", c.name, err, out)
			continue
		}
		s := string(out)
		i := strings.Index(s, "RESULT:")
		if i < 0 {
			t.Errorf("%s: no result: %.500s", c.name, s)
			continue
		}
		res := strings.SplitN(s[i+len("RESULT:"):], "\n", 2)[0]
		if c.want == "" && res != "<nil>" || c.want != "" && !strings.Contains(res, c.want) {
			t.Errorf("%s: %s, want %q", c.name, res, c.want)
		}
		if d > 20*time.Second {
			t.Errorf("%s: %v", c.name, d)
		}
		t.Logf("%-16s %8.0f ms  %.80s", c.name, float64(d.Microseconds())/1000, res)
	}
}

// luafw patch 7: the interrupt flag stops a long parse.
func TestInterruptLoad(t *testing.T) {
	L := NewState()
	defer L.Close()
	var flag atomic.Int32
	L.SetInterrupt(&flag)
	code := strings.Repeat("a = 1\n", 2e5)
	if _, err := L.LoadString(code); err != nil {
		t.Fatal(err)
	}
	flag.Store(1)
	t0 := time.Now()
	_, err := L.LoadString(code)
	if err == nil || !strings.Contains(err.Error(), "load interrupted") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(t0); d > time.Second {
		t.Errorf("interrupted load took %v", d)
	}
	flag.Store(0)
}

// Patch 8: the poll function runs every N instructions, in coroutines too,
// when a Go function asks, and a poll that sets the flag interrupts at once.
func TestPoll(t *testing.T) {
	L := NewState()
	defer L.Close()
	var flag atomic.Int32
	L.SetInterrupt(&flag)
	polls := 0
	L.SetPoll(100, func(*LState) { polls++ })
	if err := L.DoString(`return 1`); err != nil || polls != 0 {
		t.Fatalf("a short chunk: err %v, %d polls, want none", err, polls)
	}
	if err := L.DoString(`local n = 0 for i = 1, 10000 do n = n + i end assert(n == 50005000)`); err != nil {
		t.Fatal(err)
	}
	// Two instructions per iteration (ADD, FORLOOP): about 200 polls.
	if polls < 150 || polls > 260 {
		t.Fatalf("%d polls for about 20,000 instructions every 100", polls)
	}
	polls = 0
	if err := L.DoString(`local co = coroutine.wrap(function() local n = 0 for i = 1, 10000 do n = n + i end return n end)
		assert(co() == 50005000)`); err != nil {
		t.Fatal(err)
	}
	if polls < 150 {
		t.Fatalf("a coroutine polled %d times", polls)
	}
	polls = 0
	L.SetGlobal("long", L.NewFunction(func(L *LState) int { L.Poll(); return 0 }))
	if err := L.DoString(`long()`); err != nil || polls != 1 {
		t.Fatalf("Poll from Go: err %v, %d polls", err, polls)
	}
	// A poll that decides the call is over interrupts it.
	L.SetPoll(1000, func(*LState) {
		if polls++; polls == 5 {
			flag.Store(1)
		}
	})
	polls = 0
	err := L.DoString(`while true do end`)
	if err == nil || !strings.Contains(err.Error(), "interrupted") || polls != 5 {
		t.Fatalf("err %v after %d polls, want interrupted after 5", err, polls)
	}
	flag.Store(0)
	L.SetPoll(0, nil)
	if err := L.DoString(`local n = 0 for i = 1, 1000 do n = n + i end`); err != nil {
		t.Fatalf("after SetPoll(0, nil): %v", err)
	}
}

// Patch 7, compile: CompileInterruptible stops a long compile (after a
// parse that finished) at its check, in statements and in one big table
// constructor, nested functions included.
func TestInterruptCompile(t *testing.T) {
	for name, code := range map[string]string{
		"statements":  strings.Repeat("a = 1\n", 2e5),
		"constructor": "x = {" + strings.Repeat("1,", 2e5) + "}",
		"nested":      "local function f() " + strings.Repeat("a = 1\n", 2e5) + " end",
	} {
		chunk, err := parse.Parse(strings.NewReader(code), name)
		if err != nil {
			t.Fatal(err)
		}
		calls := 0
		stop := errors.New("stop")
		_, err = CompileInterruptible(chunk, name, func() error {
			if calls++; calls == 3 {
				return stop
			}
			return nil
		})
		if err != stop || calls != 3 {
			t.Errorf("%s: err %v after %d checks, want stop after 3", name, err, calls)
		}
		if _, err := CompileInterruptible(chunk, name, func() error { return nil }); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// Constants are found through a map: 200,000 distinct numbers compile in
// well under a second (the linear search took minutes), and equal
// constants are still shared.
func TestConstantsIndexed(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 200000; i++ {
		fmt.Fprintf(&b, "a = %d\n", i)
	}
	b.WriteString("a = 5; a = 'x'; a = 'x'; a = 0; a = -0\n")
	t0 := time.Now()
	chunk, err := parse.Parse(strings.NewReader(b.String()), "c")
	if err != nil {
		t.Fatal(err)
	}
	proto, err := Compile(chunk, "c")
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Errorf("200,000 constants: %v", d)
	}
	if n := len(proto.Constants); n != 200002 { // the numbers, "a", "x"
		t.Errorf("%d constants, want 200002", n)
	}
}

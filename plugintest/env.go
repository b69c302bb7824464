package plugintest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/luafw/luafw/host/luapattern"
	lua "github.com/luafw/luafw/lua"

	"github.com/luafw/luafw/internal/engine"
	"github.com/luafw/luafw/internal/sandbox"
)

// failMarker is the error value fail() raises to end a test whose failure
// it has already recorded.
type failMarker struct{}

func isFailMarker(err error) bool {
	var aerr *lua.ApiError
	if !errors.As(err, &aerr) {
		return false
	}
	ud, ok := aerr.Object.(*lua.LUserData)
	if !ok {
		return false
	}
	_, ok = ud.Value.(failMarker)
	return ok
}

// newState returns the Lua state of a test file: the daemon's sandbox
// (sandbox.NewState: base without file loading or environments, capped and
// budgeted string and table builtins, os.time/clock/date, opaque tostring)
// with the test API on top. The file's watchdog (runFile) interrupts it
// through fr.intr; `..` results that would take the heap past the file's
// memory line are refused before they are built.
func (fr *fileRun) newState() *lua.LState {
	L := sandbox.NewState()
	L.SetInterrupt(&fr.intr)
	L.SetConcatCheck(fr.concatCheck)
	g := L.G.Global
	fr.harnessMetatable(L)
	fns := map[string]lua.LGFunction{
		"print":                  fr.luaPrint,
		"test":                   fr.luaTest,
		"harness":                fr.luaHarness,
		"harness_config":         fr.luaHarnessConfig,
		"expect_eq":              fr.luaExpectEq,
		"expect_true":            fr.luaExpectTrue,
		"expect_verdict":         fr.luaExpectVerdict,
		"expect_error":           fr.luaExpectError,
		"expect_options_checked": fr.luaExpectOptionsChecked, // options.go
		"fail":                   fr.luaFail,
	}
	for name, fn := range fns {
		g.RawSetString(name, L.NewFunction(fn))
	}
	g.RawSetString("packet", packetModule(L))
	g.RawSetString("clock", fr.clockModule(L))
	return L
}

// luaPrint is print(...): a line of the test's output, with its place.
// Tables print with their contents, as in failure messages.
func (fr *fileRun) luaPrint(L *lua.LState) int {
	parts := make([]string, L.GetTop())
	for i := range parts {
		switch v := L.Get(i + 1).(type) {
		case lua.LString:
			parts[i] = string(v)
		case *lua.LTable:
			parts[i] = formatValue(L, v)
		default:
			parts[i] = sandbox.ToText(L, v)
		}
	}
	line := strings.Join(parts, "\t")
	if where := callerLine(L); where != "" {
		line = where + ": " + line
	}
	fr.output(line)
	return 0
}

// luaTest is test(name, fn): registers a test, run after the file's top
// level, in order.
func (fr *fileRun) luaTest(L *lua.LState) int {
	name := L.CheckString(1)
	fn := L.CheckFunction(2)
	if fr.running {
		L.RaiseError("test(%q): tests are declared at the top level of the file, not inside another test", name)
	}
	for _, tc := range fr.tests {
		if tc.name == name {
			L.RaiseError("test(%q): a test of that name already exists in this file", name)
		}
	}
	fr.tests = append(fr.tests, testCase{name: name, fn: fn})
	return 0
}

// withMsg puts the optional message argument in front of a failure.
func withMsg(L *lua.LState, n int, msg string) string {
	if v := L.Get(n); v != lua.LNil {
		return sandbox.ToText(L, v) + ": " + msg
	}
	return msg
}

// luaExpectEq is expect_eq(got, want [, msg]).
func (fr *fileRun) luaExpectEq(L *lua.LState) int {
	if L.GetTop() < 2 {
		L.RaiseError("expect_eq(got, want [, msg]) needs two values (use expect_eq(x, nil) to expect nil)")
	}
	got, want := L.Get(1), L.Get(2)
	ok, path, g, w := deepEqual(L, got, want)
	if !ok {
		msg := fmt.Sprintf("got %s, want %s", formatValue(L, got), formatValue(L, want))
		if path != "" {
			msg += fmt.Sprintf(" (at %s: got %s, want %s)", path, formatValue(L, g), formatValue(L, w))
		}
		fr.failf(L, "%s", withMsg(L, 3, msg))
	}
	L.Push(lua.LBool(ok))
	return 1
}

// luaExpectTrue is expect_true(v [, msg]).
func (fr *fileRun) luaExpectTrue(L *lua.LState) int {
	v := L.Get(1)
	ok := lua.LVAsBool(v)
	if !ok {
		fr.failf(L, "%s", withMsg(L, 2, fmt.Sprintf("expected a true value, got %s", formatValue(L, v))))
	}
	L.Push(lua.LBool(ok))
	return 1
}

// luaExpectVerdict is expect_verdict(decision, "drop" [, msg]).
func (fr *fileRun) luaExpectVerdict(L *lua.LState) int {
	d, isTable := L.Get(1).(*lua.LTable)
	want := strings.ToLower(L.CheckString(2))
	if _, err := engine.ParseVerdict(want); err != nil {
		L.ArgError(2, err.Error())
	}
	if !isTable {
		L.ArgError(1, fmt.Sprintf("want a decision (what h:run or h:send return), got %s", L.Get(1).Type()))
	}
	got := lua.LVAsString(d.RawGetString("verdict"))
	ok := got == want
	if !ok {
		by := "no plugin"
		if b := d.RawGetString("by"); b != lua.LNil {
			by = "by " + b.String()
		}
		msg := fmt.Sprintf("verdict %s (%s, at %s", got, by, lua.LVAsString(d.RawGetString("hook")))
		if n, _ := d.RawGetString("errors").(lua.LNumber); n > 0 {
			msg += fmt.Sprintf(", %d callback errors", int(n))
		}
		fr.failf(L, "%s", withMsg(L, 3, msg+"), want "+want))
	}
	L.Push(lua.LBool(ok))
	return 1
}

// luaExpectError is expect_error(fn, pattern): fn must raise an error whose
// message contains pattern, as plain text or as a Lua pattern. It returns
// the message.
func (fr *fileRun) luaExpectError(L *lua.LState) int {
	fn := L.CheckFunction(1)
	pattern := L.OptString(2, "")
	L.Push(fn)
	err := L.PCall(0, 0, nil)
	if err == nil {
		fr.failf(L, "expected an error matching %q, got none", pattern)
		L.Push(lua.LNil)
		return 1
	}
	if isFailMarker(err) {
		// fail() inside fn ends the test, as anywhere else.
		L.Error(err.(*lua.ApiError).Object, 0)
	}
	msg := fr.errorMessage(L, err, "")
	if pattern != "" && !strings.Contains(msg, pattern) && !fr.patternMatches(L, pattern, msg) {
		fr.failf(L, "error %q does not match %q", msg, pattern)
	}
	L.Push(lua.LString(msg))
	return 1
}

// luaFail is fail([msg]): records a failure and ends the test.
func (fr *fileRun) luaFail(L *lua.LState) int {
	fr.failf(L, "%s", L.OptString(1, "failed"))
	ud := L.NewUserData()
	ud.Value = failMarker{}
	L.Error(ud, 0)
	return 0
}

// clockModule is clock.now() and clock.advance(seconds).
func (fr *fileRun) clockModule(L *lua.LState) *lua.LTable {
	m := L.NewTable()
	m.RawSetString("now", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LNumber(float64(fr.clock.Now().UnixNano()) / 1e9))
		return 1
	}))
	m.RawSetString("advance", L.NewFunction(func(L *lua.LState) int {
		s := float64(L.CheckNumber(1))
		if s < 0 || math.IsNaN(s) || math.IsInf(s, 0) {
			L.ArgError(1, "seconds must be a finite number >= 0 (the clock does not go back)")
		}
		ctx := L.Context()
		if ctx == nil {
			ctx = context.Background()
		}
		if err := fr.advance(ctx, time.Duration(s*float64(time.Second))); err != nil {
			L.RaiseError("%v", err)
		}
		L.Push(lua.LNumber(float64(fr.clock.Now().UnixNano()) / 1e9))
		return 1
	}))
	return m
}

// patternMatches reports whether the Lua pattern p matches somewhere in s,
// with the sandbox's matcher: bounded, and cut off with the test (a Lua
// error once the state is interrupted).
func (fr *fileRun) patternMatches(L *lua.LState, p, s string) bool {
	anchored := strings.HasPrefix(p, "^")
	if anchored {
		p = p[1:]
	}
	meter := sandbox.Meter(L)
	m := &luapattern.Matcher{Check: func() error { meter.Step(1 << 10); return nil }, CheckEvery: 1 << 10}
	start, _, err := m.Find(s, p, 0, anchored)
	return err == nil && start >= 0
}

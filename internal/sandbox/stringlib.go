package sandbox

import (
	"strconv"
	"strings"

	lua "github.com/luafw/luafw/lua"

	"github.com/luafw/luafw/host/luapattern"
)

// The sandbox's string.find, match, gmatch and gsub: Lua 5.1's functions
// (lstrlib.c) on host/luapattern, whose matcher looks at the call's budget
// while it backtracks. gopher-lua's own versions cannot be interrupted
// inside one Go call (a crafted payload made "a*a*a*a*b" run for minutes),
// build gsub's result without a size limit, and differ from Lua 5.1 in
// places (see luastring_test.go).

// patternSpecials are the bytes that make string.find use the matcher
// instead of a plain search.
const patternSpecials = "^$*+?.([%-"

// openPatternFuncs puts the pattern functions into the string table str.
func openPatternFuncs(L *lua.LState, str *lua.LTable) {
	gmatch := L.NewFunction(strGmatch)
	for name, fn := range map[string]*lua.LFunction{
		"find": L.NewFunction(strFind), "match": L.NewFunction(strMatch),
		"gmatch": gmatch, "gfind": gmatch, "gsub": L.NewFunction(strGsub),
	} {
		str.RawSetString(name, fn)
	}
}

// newMatcher returns a matcher that raises a Lua error in L when the
// running call's budget is gone.
func newMatcher(L *lua.LState) *luapattern.Matcher {
	return &luapattern.Matcher{
		// interruptCheck also charges the call's poll (lua patch 8):
		// without it a catastrophic pattern ran for minutes past a 20 ms
		// budget while the watchdog slept.
		Check:      func() error { interruptCheck(L); return nil },
		CheckEvery: checkEvery,
	}
}

// startOffset is Lua 5.1's init argument of find and match as a byte
// offset: negative counts from the end, and it is clamped to [0, len].
func startOffset(L *lua.LState, n int, length int) int {
	init := optInt(L, n, 1)
	if init < 0 {
		init += length + 1
	}
	return min(max(init-1, 0), length)
}

// optInt is luaL_optinteger: like gopher-lua's OptInt, but a numeric
// string is a number, as everywhere in Lua 5.1.
func optInt(L *lua.LState, n int, d int) int {
	if L.Get(n) == lua.LNil {
		return d
	}
	return int(L.CheckNumber(n))
}

// raisePatternError turns a matcher error into a Lua error.
func raisePatternError(L *lua.LState, err error) {
	L.RaiseError("%s", err.Error())
}

func strFind(L *lua.LState) int {
	s, p := L.CheckString(1), L.CheckString(2)
	init := startOffset(L, 3, len(s))
	if lua.LVAsBool(L.Get(4)) || !strings.ContainsAny(p, patternSpecials) {
		if i := strings.Index(s[init:], p); i >= 0 {
			L.Push(lua.LNumber(init + i + 1))
			L.Push(lua.LNumber(init + i + len(p)))
			return 2
		}
		L.Push(lua.LNil)
		return 1
	}
	return findAux(L, s, p, init, true)
}

func strMatch(L *lua.LState) int {
	s, p := L.CheckString(1), L.CheckString(2)
	return findAux(L, s, p, startOffset(L, 3, len(s)), false)
}

// findAux is the matching half of str_find_aux: find returns the bounds
// and the captures, match the captures (or the whole match).
func findAux(L *lua.LState, s, p string, init int, find bool) int {
	anchored := strings.HasPrefix(p, "^")
	if anchored {
		p = p[1:]
	}
	m := newMatcher(L)
	start, end, err := m.Find(s, p, init, anchored)
	if err != nil {
		raisePatternError(L, err)
	}
	if start < 0 {
		L.Push(lua.LNil)
		return 1
	}
	if !find {
		return pushCaptures(L, m, s, start, end, true)
	}
	L.Push(lua.LNumber(start + 1))
	L.Push(lua.LNumber(end))
	return 2 + pushCaptures(L, m, s, start, end, false)
}

// pushCaptures pushes the captures of the match s[start:end]; with none,
// the whole match if whole is set (match, gmatch, gsub's function) and
// nothing otherwise (find).
func pushCaptures(L *lua.LState, m *luapattern.Matcher, s string, start, end int, whole bool) int {
	n := m.Level()
	if n == 0 && whole {
		n = 1
	}
	for i := 0; i < n; i++ {
		L.Push(captureValue(L, m, s, i, start, end))
	}
	return n
}

// captureValue is capture i of the match s[start:end] as a Lua value that
// a script may keep: a string capture goes through piece (stringsub.go),
// so that it does not pin much more of s than it holds.
func captureValue(L *lua.LState, m *luapattern.Matcher, s string, i, start, end int) lua.LValue {
	c, err := m.Capture(i, start, end)
	if err != nil {
		raisePatternError(L, err)
	}
	if c.Position {
		return lua.LNumber(c.Start + 1)
	}
	return piece(s, c.Start, c.End)
}

// strGmatch returns Lua 5.1's gmatch iterator. As in Lua 5.1, '^' is not an
// anchor here but an ordinary character, and after an empty match the next
// search starts one byte further. The iterator carries s and p as
// upvalues too (it reads its Go copies), so that the plugin memory walk
// counts a kept iterator with the string it keeps alive.
func strGmatch(L *lua.LState) int {
	s, p := L.CheckString(1), L.CheckString(2)
	pos := 0
	L.Push(L.NewClosure(func(L *lua.LState) int {
		m := newMatcher(L)
		start, end, err := m.Find(s, p, pos, false)
		if err != nil {
			raisePatternError(L, err)
		}
		if start < 0 {
			return 0
		}
		pos = end
		if end == start {
			pos++
		}
		return pushCaptures(L, m, s, start, end, true)
	}, L.Get(1), L.Get(2)))
	return 1
}

func strGsub(L *lua.LState) int {
	s, p := L.CheckString(1), L.CheckString(2)
	repl := L.Get(3)
	switch repl.Type() {
	case lua.LTNumber, lua.LTString, lua.LTFunction, lua.LTTable:
	default:
		L.ArgError(3, "string/function/table expected")
	}
	maxN := optInt(L, 4, len(s)+1)
	anchored := strings.HasPrefix(p, "^")
	if anchored {
		p = p[1:]
	}
	m := newMatcher(L)
	out := gsubBuilder{L: L, meter: Meter(L)}
	n, src, copied := 0, 0, 0 // s[copied:src] is kept but not yet in out
	for n < maxN {
		start, end, err := m.Find(s, p, src, true)
		if err != nil {
			raisePatternError(L, err)
		}
		if start >= 0 {
			n++
			out.add(s[copied:src])
			gsubValue(L, m, &out, s, repl, start, end)
			copied = end
		}
		if start >= 0 && end > src {
			src = end
		} else if src < len(s) {
			src++
		} else {
			break
		}
		if anchored {
			break
		}
	}
	if n == 0 {
		L.Push(lua.LString(s))
		L.Push(lua.LNumber(0))
		return 2
	}
	out.add(s[copied:])
	L.Push(lua.LString(out.b))
	L.Push(lua.LNumber(n))
	return 2
}

// gsubValue appends the replacement for the match s[start:end] (add_value
// in lstrlib.c).
func gsubValue(L *lua.LState, m *luapattern.Matcher, out *gsubBuilder, s string, repl lua.LValue, start, end int) {
	var v lua.LValue
	switch r := repl.(type) {
	case lua.LString:
		gsubString(L, m, out, s, string(r), start, end)
		return
	case lua.LNumber:
		gsubString(L, m, out, s, r.String(), start, end)
		return
	case *lua.LFunction:
		L.Push(r)
		L.Call(pushCaptures(L, m, s, start, end, true), 1)
		v = L.Get(-1)
		L.Pop(1)
	case *lua.LTable:
		v = L.GetTable(r, captureValue(L, m, s, 0, start, end))
	}
	switch x := v.(type) {
	case lua.LString:
		out.add(string(x))
	case lua.LNumber:
		out.add(x.String())
	default:
		if lua.LVAsBool(v) {
			L.RaiseError("invalid replacement value (a %s)", v.Type().String())
		}
		out.add(s[start:end]) // nil or false keeps the match
	}
}

// gsubString appends the replacement string r for the match s[start:end]:
// %0-%9 are captures, '%' before anything else is that character, and, as
// in Lua 5.1, a trailing '%' stands for a NUL byte (C reads the string's
// terminator).
func gsubString(L *lua.LState, m *luapattern.Matcher, out *gsubBuilder, s, r string, start, end int) {
	for len(r) > 0 {
		i := strings.IndexByte(r, '%')
		if i < 0 {
			out.add(r)
			return
		}
		out.add(r[:i])
		var c byte
		if i+1 < len(r) {
			c = r[i+1]
		}
		r = r[min(i+2, len(r)):]
		switch {
		case c == '0':
			out.add(s[start:end])
		case '1' <= c && c <= '9':
			// Copied into the result at once: no piece needed.
			cp, err := m.Capture(int(c-'1'), start, end)
			if err != nil {
				raisePatternError(L, err)
			}
			if cp.Position {
				out.add(strconv.Itoa(cp.Start + 1))
			} else {
				out.add(s[cp.Start:cp.End])
			}
		default:
			out.add(string(c))
		}
	}
}

// gsubBuilder is gsub's result; it refuses to grow past maxStringResult,
// and checks before it copies. Copying counts against the call's budget
// in 64-byte units.
type gsubBuilder struct {
	L     *lua.LState
	meter BudgetMeter
	b     []byte
}

func (g *gsubBuilder) add(s string) {
	if len(s) == 0 {
		return
	}
	g.meter.Step(1 + len(s)/64)
	need := len(g.b) + len(s)
	if need > maxStringResult {
		g.L.RaiseError("string.gsub: result exceeds the sandbox limit of %d bytes", maxStringResult)
	}
	if need > cap(g.b) {
		nb := make([]byte, len(g.b), min(max(2*cap(g.b), need, 64), maxStringResult))
		copy(nb, g.b)
		g.b = nb
	}
	g.b = append(g.b, s...)
}

package sandbox

import (
	"fmt"
	"runtime/metrics"
	"strings"

	lua "github.com/luafw/luafw/lua"
)

// Limits on what one call of a builtin may build, so that a script cannot
// exhaust memory in one step that the time budget cannot interrupt.
const (
	maxStringResult = 1 << 20 // bytes a string builtin may return
	maxFormatWidth  = 99      // width or precision in string.format
	callStackSize   = 200     // Lua call depth
	registrySize    = 1024 * 4
	registryMaxSize = 1024 * 64 // Lua value stack slots
)

// lockedMeta is what getmetatable returns for protected tables.
const LockedMeta = "locked"

// newSandbox returns a Lua state with only the safe parts of the standard
// library: base (without file loading, environments or the GC), string,
// table, math, and os.time/clock/date. Builtin tables and the string
// metatable are read-only.
func NewState() *lua.LState {
	L := lua.NewState(lua.Options{
		SkipOpenLibs:    true,
		MaxArrayIndex:   MaxArrayIndex,
		CallStackSize:   callStackSize,
		RegistrySize:    registrySize,
		RegistryMaxSize: registryMaxSize,
		// gopher-lua grows the value stack by required+step slots at a
		// time: with its default step of 32, a builtin pushing thousands
		// of values (unpack, string.byte) reallocated it thousands of
		// times, quadratic in time and garbage.
		RegistryGrowStep: registrySize,
	})
	for _, open := range []lua.LGFunction{lua.OpenBase, lua.OpenTable, lua.OpenString, lua.OpenMath, lua.OpenOs} {
		L.Push(L.NewFunction(open))
		L.Call(0, 0)
	}
	g := L.G.Global
	for _, name := range []string{"dofile", "loadfile", "load", "loadstring", "require", "module",
		"getfenv", "setfenv", "newproxy", "_printregs", "_GOPHER_LUA_VERSION"} {
		g.RawSetString(name, lua.LNil)
	}
	g.RawSetString("collectgarbage", L.NewFunction(luaCollectGarbage))
	g.RawSetString("rawset", L.NewFunction(luaRawSet))
	openSafeBase(L, g)
	openSafeTable(L, g.RawGetString("table").(*lua.LTable))
	// After the safe builtins: it wraps them so they read through the
	// read-only proxies and refuse to write them.
	installProxyAware(L)

	// os: only the clock.
	osOrig := g.RawGetString("os").(*lua.LTable)
	osSafe := L.NewTable()
	for _, name := range []string{"time", "clock", "date", "difftime"} {
		osSafe.RawSetString(name, osOrig.RawGetString(name))
	}
	openSafeOS(L, osSafe)
	g.RawSetString("os", osSafe)

	// string: capped builtins; the table is also the string metatable.
	str := g.RawGetString("string").(*lua.LTable)
	str.RawSetString("dump", lua.LNil)
	str.RawSetString("rep", L.NewFunction(luaStrRep))
	str.RawSetString("byte", L.NewFunction(luaStrByte))
	openPatternFuncs(L, str)
	openSubFuncs(L, str)
	str.RawSetString("format", L.NewFunction(luaStrFormat))
	// The string metatable was the string table itself; give strings a
	// metatable of their own whose __index is a copy, reachable from no
	// script value.
	strMT := L.NewTable()
	strMT.RawSetString("__index", copyTable(L, str))
	strMT.RawSetString("__metatable", lua.LString(LockedMeta))
	L.SetMetatable(lua.LString(""), strMT)

	// The standard library is read-only but not Strict: reading a name
	// it lacks gives nil, as in Lua 5.1, so ordinary code such as
	// `local unpack = table.unpack or unpack` computes what it computes
	// everywhere else.
	for _, name := range []string{"string", "table", "math", "os"} {
		g.RawSetString(name, readOnly(L, g.RawGetString(name).(*lua.LTable), name, false))
	}
	return L
}

// ReadOnly returns a proxy of t that refuses writes. It reads from a copy
// of t without metamethod fields, so the string metatable (which is the
// string library table itself) stays unreachable. The copy is Strict: a
// read of a string key it does not have is an error naming the key.
func ReadOnly(L *lua.LState, t *lua.LTable, name string) *lua.LTable {
	return readOnly(L, t, name, true)
}

// readOnly is ReadOnly; strict says whether the copy is Strict.
func readOnly(L *lua.LState, t *lua.LTable, name string, strict bool) *lua.LTable {
	backing := copyTable(L, t)
	if strict {
		Strict(L, backing, name)
	}
	proxy := L.NewTable()
	mt := L.NewTable()
	mt.RawSetString("__index", backing)
	mt.RawSetString("__newindex", L.NewFunction(func(L *lua.LState) int {
		L.RaiseError("%s is read-only (assignment to %s.%s)", name, name, L.ToString(2))
		return 0
	}))
	mt.RawSetString("__len", L.NewFunction(proxyLen))
	mt.RawSetString("__metatable", lua.LString(LockedMeta))
	L.SetMetatable(proxy, mt)
	return proxy
}

// isLocked reports whether t is one of the read-only proxies. (GetMetatable
// would answer the __metatable field, so read the raw metatable.)
// copyTable copies t's fields, leaving out metamethod names ("__...").
func copyTable(L *lua.LState, t *lua.LTable) *lua.LTable {
	c := L.NewTable()
	t.ForEach(func(k, v lua.LValue) {
		if ks, ok := k.(lua.LString); ok && strings.HasPrefix(string(ks), "__") {
			return
		}
		c.RawSet(k, v)
	})
	return c
}

func isLocked(t *lua.LTable) bool {
	mt, ok := t.Metatable.(*lua.LTable)
	return ok && mt.RawGetString("__metatable") == lua.LString(LockedMeta)
}

// luaRawSet is rawset that refuses the read-only builtin tables.
func luaRawSet(L *lua.LState) int {
	t := L.CheckTable(1)
	if isLocked(t) {
		L.RaiseError("rawset: table is read-only")
	}
	t.RawSet(L.CheckAny(2), L.CheckAny(3))
	L.Push(t)
	return 1
}

// luaCollectGarbage allows only collectgarbage("count"): the heap in KiB.
func luaCollectGarbage(L *lua.LState) int {
	opt := L.OptString(1, "collect")
	if opt != "count" {
		L.RaiseError("collectgarbage(%q) is not allowed in the sandbox (only \"count\")", opt)
	}
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	var kib float64
	if s[0].Value.Kind() == metrics.KindUint64 {
		kib = float64(s[0].Value.Uint64()) / 1024
	}
	L.Push(lua.LNumber(kib))
	return 1
}

// luaToGo converts a Go value from configuration (YAML) to Lua.
func GoToLua(L *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(x)
	case int:
		return lua.LNumber(x)
	case int64:
		return lua.LNumber(x)
	case uint64:
		return lua.LNumber(x)
	case float64:
		return lua.LNumber(x)
	case string:
		return lua.LString(x)
	case []any:
		t := L.CreateTable(len(x), 0)
		for i, e := range x {
			// Not Append: it skips nils (shifting later elements) and
			// fills the array part past the array bound, where reads
			// no longer look.
			t.RawSetInt(i+1, GoToLua(L, e))
		}
		return t
	case map[string]any:
		t := L.CreateTable(0, len(x))
		for k, e := range x {
			t.RawSetString(k, GoToLua(L, e))
		}
		return t
	case map[any]any:
		t := L.CreateTable(0, len(x))
		for k, e := range x {
			t.RawSet(GoToLua(L, k), GoToLua(L, e))
		}
		return t
	default:
		return lua.LString(fmt.Sprint(x))
	}
}

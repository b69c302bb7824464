package sandbox

import (
	lua "github.com/luafw/luafw/lua"
)

// Read-only tables are proxies (see readOnly): an empty table whose
// metatable reads from a backing table and refuses writes. So that they
// still behave like the tables they stand for, the builtins that read a
// table directly (pairs, ipairs, next, unpack, #, table.concat, table.getn,
// table.maxn) read the backing table of a proxy, and those that write one
// directly (table.insert, table.remove, table.sort) refuse a proxy, as
// rawset does. The backing table is never handed to a script. For ordinary
// tables (no metatable) each builtin costs one more pointer comparison.

// lockedBacking returns the backing table of a read-only proxy, or nil
// when t is not one.
func lockedBacking(t *lua.LTable) *lua.LTable {
	if t.Metatable == lua.LNil || !isLocked(t) {
		return nil
	}
	b, _ := t.Metatable.(*lua.LTable).RawGetString("__index").(*lua.LTable)
	return b
}

// contents is what a builtin reading t directly should read: the backing
// table of a proxy, else t.
func Contents(t *lua.LTable) *lua.LTable {
	if b := lockedBacking(t); b != nil {
		return b
	}
	return t
}

// installProxyAware replaces the builtins that read or write tables
// directly with versions that know read-only proxies.
func installProxyAware(L *lua.LState) {
	g := L.G.Global
	next := L.NewFunction(luaNext)
	g.RawSetString("next", next)
	g.RawSetString("pairs", L.NewClosure(luaPairs, next))
	g.RawSetString("ipairs", L.NewClosure(luaIpairs, L.NewFunction(ipairsStep)))
	g.RawSetString("unpack", L.NewFunction(readsTable(g.RawGetString("unpack").(*lua.LFunction))))
	tbl := g.RawGetString("table").(*lua.LTable)
	for _, name := range []string{"concat", "getn", "maxn"} {
		tbl.RawSetString(name, L.NewFunction(readsTable(tbl.RawGetString(name).(*lua.LFunction))))
	}
	for _, name := range []string{"insert", "remove", "sort"} {
		tbl.RawSetString(name, L.NewFunction(writesTable(tbl.RawGetString(name).(*lua.LFunction), "table."+name)))
	}
}

// luaNext is next(t [, key]).
func luaNext(L *lua.LState) int {
	t := Contents(L.CheckTable(1))
	k, v := t.Next(L.Get(2))
	if k == lua.LNil {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(k)
	L.Push(v)
	return 2
}

// luaPairs is pairs(t): next (its upvalue), t, nil.
func luaPairs(L *lua.LState) int {
	t := L.CheckTable(1)
	L.Push(L.Get(lua.UpvalueIndex(1)))
	L.Push(t)
	L.Push(lua.LNil)
	return 3
}

// luaIpairs is ipairs(t): ipairsStep (its upvalue), t, 0.
func luaIpairs(L *lua.LState) int {
	t := L.CheckTable(1)
	L.Push(L.Get(lua.UpvalueIndex(1)))
	L.Push(t)
	L.Push(lua.LNumber(0))
	return 3
}

func ipairsStep(L *lua.LState) int {
	t := Contents(L.CheckTable(1))
	i := L.CheckInt(2) + 1
	v := t.RawGetInt(i)
	if v == lua.LNil && i >= t.MaxArrayIndex() {
		// Past the array bound (see tablelib.go) keys live in the hash.
		v = t.RawGet(lua.LNumber(i))
	}
	if v == lua.LNil {
		return 0
	}
	L.Push(lua.LNumber(i))
	L.Push(v)
	return 2
}

// proxyLen is a proxy's __len.
func proxyLen(L *lua.LState) int {
	L.Push(lua.LNumber(Contents(L.CheckTable(1)).Len()))
	return 1
}

// readsTable wraps a Go builtin whose first argument is a table it reads,
// so that it reads a proxy's backing table. The builtin runs in the
// caller's frame (no extra call), and it returns no table.
func readsTable(orig *lua.LFunction) lua.LGFunction {
	return func(L *lua.LState) int {
		if t, ok := L.Get(1).(*lua.LTable); ok {
			if b := lockedBacking(t); b != nil {
				L.Replace(1, b)
			}
		}
		return orig.GFunction(L)
	}
}

// writesTable wraps a Go builtin whose first argument is a table it
// writes, refusing read-only proxies.
func writesTable(orig *lua.LFunction, name string) lua.LGFunction {
	return func(L *lua.LState) int {
		if t, ok := L.Get(1).(*lua.LTable); ok && lockedBacking(t) != nil {
			L.RaiseError("%s: table is read-only", name)
		}
		return orig.GFunction(L)
	}
}

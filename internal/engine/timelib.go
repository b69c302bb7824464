package engine

import (
	lua "github.com/luafw/luafw/lua"
)

// The time module: time.now(), seconds (with fraction) from the engine
// clock, which tests and replays may set.

var timeFuncs = map[string]lua.LGFunction{
	"now": timeNow,
}

func openTime(ps *pluginState) *lua.LTable {
	return ps.L.SetFuncs(ps.L.NewTable(), timeFuncs, ps.self)
}

func timeNow(L *lua.LState) int {
	t := stateOf(L).e.opts.Clock()
	L.Push(lua.LNumber(float64(t.UnixNano()) / 1e9))
	return 1
}

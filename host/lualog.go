package host

import (
	"context"
	"log/slog"
	"sort"

	lua "github.com/yuin/gopher-lua"
)

// The log module and print: script log lines, rate-limited per plugin,
// through the engine's logger.

var logFuncs = map[string]lua.LGFunction{
	"debug": logDebug,
	"info":  logInfo,
	"warn":  logWarn,
	"error": logError,
}

// openLog builds the log table of ps: log.debug/info/warn/error(msg,
// {fields}).
func openLog(ps *pluginState) *lua.LTable {
	return ps.L.SetFuncs(ps.L.NewTable(), logFuncs, ps.self)
}

func logDebug(L *lua.LState) int { return logAt(L, slog.LevelDebug) }
func logInfo(L *lua.LState) int  { return logAt(L, slog.LevelInfo) }
func logWarn(L *lua.LState) int  { return logAt(L, slog.LevelWarn) }
func logError(L *lua.LState) int { return logAt(L, slog.LevelError) }

func logAt(L *lua.LState, level slog.Level) int {
	ps := stateOf(L)
	ps.e.scriptLog(ps, level, L, 0)
	return 0
}

// luaPrint is print(...): an info line of the arguments, tab-separated.
func luaPrint(L *lua.LState) int {
	ps := stateOf(L)
	ps.e.scriptLog(ps, slog.LevelInfo, L, 1)
	return 0
}

// scriptLog logs a script's line. With fields == 0 the arguments are a
// message and an optional table of fields; otherwise they are print's.
func (e *Engine) scriptLog(ps *pluginState, level slog.Level, L *lua.LState, printStyle int) {
	if !e.log.Enabled(context.Background(), level) {
		return
	}
	ok, suppressed := ps.p.logLimiter.allow(e.nanos())
	if !ok {
		return
	}
	attrs := []any{"plugin", ps.p.name()}
	var msg string
	if printStyle != 0 {
		for i := 1; i <= L.GetTop(); i++ {
			if i > 1 {
				msg += "\t"
			}
			msg += L.ToStringMeta(L.Get(i)).String()
		}
	} else {
		msg = L.ToStringMeta(L.Get(1)).String()
		if t, ok := L.Get(2).(*lua.LTable); ok {
			// Sorted: a Lua table's order changes from run to run.
			var keys []string
			vals := map[string]lua.LValue{}
			contents(t).ForEach(func(k, v lua.LValue) {
				keys = append(keys, k.String())
				vals[k.String()] = v
			})
			sort.Strings(keys)
			for _, k := range keys {
				attrs = append(attrs, k, luaToAttr(vals[k]))
			}
		}
	}
	if suppressed > 0 {
		attrs = append(attrs, "suppressed", suppressed)
	}
	if where := L.Where(1); where != "" {
		attrs = append(attrs, "at", where[:len(where)-1])
	}
	e.log.Log(context.Background(), level, msg, attrs...)
}

func luaToAttr(v lua.LValue) any {
	switch x := v.(type) {
	case lua.LNumber:
		return float64(x)
	case lua.LBool:
		return bool(x)
	}
	return v.String()
}

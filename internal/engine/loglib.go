package engine

import (
	"context"
	"log/slog"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/luafw/luafw/internal/sandbox"

	lua "github.com/luafw/luafw/lua"
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

// Limits on one script log line, so that a huge argument costs a bounded
// amount of time and memory in Go (where the VM's budget checks do not
// run). Cut strings end in "...".
const (
	maxLogMessage = 4096 // bytes of the message (print: of all arguments)
	maxLogFields  = 32   // fields of a log.* call; more are left out
	maxLogKey     = 64   // bytes of a field's name
	maxLogValue   = 1024 // bytes of a field's value
)

// scriptLog logs a script's line. With printStyle == 0 the arguments are a
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
		msg = printMessage(L)
	} else {
		msg = cut(sandbox.ToText(L, L.Get(1)), maxLogMessage)
		if t, ok := L.Get(2).(*lua.LTable); ok {
			attrs = appendFields(L, attrs, sandbox.Contents(t))
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

// printMessage is print's arguments, tab-separated, up to maxLogMessage
// bytes; the arguments after that are not looked at.
func printMessage(L *lua.LState) string {
	var b strings.Builder
	m := sandbox.Meter(L)
	for i := 1; i <= L.GetTop() && b.Len() <= maxLogMessage; i++ {
		m.Step(1)
		if i > 1 {
			b.WriteByte('\t')
		}
		s := sandbox.ToText(L, L.Get(i))
		b.WriteString(s[:min(len(s), maxLogMessage+1-b.Len())]) // the final cut marks it
	}
	return cut(b.String(), maxLogMessage)
}

// appendFields adds up to maxLogFields fields of t to attrs, sorted by name
// (a Lua table's order changes from run to run), and "fields_left_out"
// when there were more.
func appendFields(L *lua.LState, attrs []any, t *lua.LTable) []any {
	type field struct {
		k string
		v lua.LValue
	}
	var fields []field
	m := sandbox.Meter(L)
	more := false
	for k, v := t.Next(lua.LNil); k != lua.LNil; k, v = t.Next(k) {
		if len(fields) == maxLogFields {
			more = true
			break
		}
		m.Step(1)
		fields = append(fields, field{cut(sandbox.ObjectName(L, k), maxLogKey), v})
	}
	sort.Slice(fields, func(i, j int) bool { return fields[i].k < fields[j].k })
	for _, f := range fields {
		attrs = append(attrs, f.k, luaToAttr(L, f.v))
	}
	if more {
		attrs = append(attrs, "fields_left_out", true)
	}
	return attrs
}

func luaToAttr(L *lua.LState, v lua.LValue) any {
	switch x := v.(type) {
	case lua.LNumber:
		return float64(x)
	case lua.LBool:
		return bool(x)
	}
	return cut(sandbox.ObjectName(L, v), maxLogValue)
}

// cut shortens s to at most n bytes, ending in "..." when it was longer,
// without splitting a UTF-8 sequence.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	end := max(n-3, 0)
	for end > 0 && !utf8.RuneStart(s[end]) {
		end--
	}
	return s[:end] + "..."
}

// Package sandbox owns the Lua standard library luafw's scripts get: a
// gopher-lua state with only base, string, table, math, os.time/clock/date
// and bit, each builtin bounded so that one call can neither run unbounded
// inside Go nor build an unbounded result.
//
// Guarantees: no file, process or environment access; builtin tables and
// the string metatable are read-only (read through proxies); results of
// string and table builtins are capped (1 MiB strings, 8000 values from
// unpack and string.byte, 1<<16 array slots); long builtins (patterns,
// table.sort/concat/insert/remove, string.format/rep/gsub) look at their
// call's budget every 1024 steps through a BudgetMeter and raise a Lua error
// once the host has interrupted the state; tostring shows a stable opaque id
// instead of a Go address. Ordinary code computes what Lua 5.1 computes: the
// Lua 5.1 suite's pm.lua and strings.lua run here with their asserts on.
//
// Costs: a budget look is an atomic load every 1024 steps; the pattern
// matcher (host/luapattern) is faster than gopher-lua's on ordinary
// patterns. Files are named after gopher-lua's own (baselib.go,
// stringlib.go, tablelib.go, oslib.go); budget.go is the budget polling.
package sandbox

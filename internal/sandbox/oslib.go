package sandbox

import (
	"math"

	lua "github.com/luafw/luafw/lua"
)

// os.date and os.time, bounded: gopher-lua's os.date expands each
// conversion of any length of format in one call, and its os.time hands
// any field value to time.Date.

// maxDateFormat bounds os.date's format. A conversion expands to at most
// about 30 bytes (%c), so the result stays under 4 KiB; real formats are a
// few dozen bytes.
const maxDateFormat = 256

// maxDateField bounds each field of os.time's table, as C's struct tm holds
// them in an int; beyond it os.time returns nil, as Lua 5.1 does when
// mktime fails.
const maxDateField = math.MaxInt32

// dateFields are the os.time fields gopher-lua reads as numbers.
var dateFields = [...]string{"sec", "min", "hour", "day", "month", "year"}

func safeOSDate(orig *lua.LFunction) lua.LGFunction {
	return func(L *lua.LState) int {
		if L.GetTop() >= 1 {
			if f := L.CheckString(1); len(f) > maxDateFormat {
				L.RaiseError("os.date: format of %d bytes exceeds the sandbox limit of %d", len(f), maxDateFormat)
			}
		}
		return callOrig(L, orig)
	}
}

func safeOSTime(orig *lua.LFunction) lua.LGFunction {
	return func(L *lua.LState) int {
		if t, ok := L.Get(1).(*lua.LTable); ok {
			for _, name := range dateFields {
				v := t.RawGetString(name)
				if s, ok := v.(lua.LString); ok {
					v = lua.LVAsNumber(s) // 0 when s is not a number: gopher-lua then uses the default
				}
				if n, ok := v.(lua.LNumber); ok && !(math.Abs(float64(n)) <= maxDateField) {
					L.Push(lua.LNil)
					return 1
				}
			}
		}
		return callOrig(L, orig)
	}
}

// callOrig calls orig with this call's arguments and returns its results.
func callOrig(L *lua.LState, orig *lua.LFunction) int {
	n := L.GetTop()
	L.Push(orig)
	for i := 1; i <= n; i++ {
		L.Push(L.Get(i))
	}
	L.Call(n, lua.MultRet)
	return L.GetTop() - n
}

// openSafeOS puts the bounded os.date and os.time into the sandbox's os
// table.
func openSafeOS(L *lua.LState, os *lua.LTable) {
	if f, ok := os.RawGetString("date").(*lua.LFunction); ok {
		os.RawSetString("date", L.NewFunction(safeOSDate(f)))
	}
	if f, ok := os.RawGetString("time").(*lua.LFunction); ok {
		os.RawSetString("time", L.NewFunction(safeOSTime(f)))
	}
}

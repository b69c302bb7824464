package sandbox

import (
	"fmt"
	"slices"

	lua "github.com/luafw/luafw/lua"
)

// Strict makes reading a string key that t does not have an error naming
// it ("fw.DORP: no such field in fw (did you mean fw.DROP?)") instead of
// nil, so that a misspelled API name fails loudly where it is used rather
// than passing as nil (nil from a callback means accept). It gives t a
// metatable whose __index is a function: a read of a key t has never
// reaches it, so present names cost nothing more. Keys of other types
// (a list's t[i] past its end) still read nil.
func Strict(L *lua.LState, t *lua.LTable, name string) {
	mt := L.NewTable()
	mt.RawSetString("__index", L.NewClosure(strictIndex, lua.LString(name)))
	mt.RawSetString("__metatable", lua.LString(LockedMeta))
	t.Metatable = mt
}

func strictIndex(L *lua.LState) int {
	key, ok := L.Get(2).(lua.LString)
	if !ok {
		L.Push(lua.LNil)
		return 1
	}
	var names []string
	L.CheckTable(1).ForEach(func(k, _ lua.LValue) {
		if s, ok := k.(lua.LString); ok {
			names = append(names, string(s))
		}
	})
	L.RaiseError("%s", NoSuchField(L.ToString(lua.UpvalueIndex(1)), string(key), names))
	return 0
}

// NoSuchField is the message for a read of key, which table name does
// not have: it suggests the closest of names.
func NoSuchField(name, key string, names []string) string {
	msg := fmt.Sprintf("%s: no such field in %s", fieldName(name, key), name)
	if c := Closest(key, names); c != "" {
		msg += fmt.Sprintf(" (did you mean %s?)", fieldName(name, c))
	}
	return msg
}

// fieldName is name.key, or name["key"] when key is no identifier.
func fieldName(name, key string) string {
	if isIdent(key) {
		return name + "." + key
	}
	return name + "[" + QuoteCut(key, 64) + "]"
}

func isIdent(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// Globals returns the string-keyed globals of L, each with the sorted
// string keys of its value when that is a table (a read-only proxy's
// backing table): the names a script sees, for generated definitions.
func Globals(L *lua.LState) map[string][]string {
	out := map[string][]string{}
	L.G.Global.ForEach(func(k, v lua.LValue) {
		name, ok := k.(lua.LString)
		if !ok {
			return
		}
		fields := []string{}
		if t, ok := v.(*lua.LTable); ok {
			Contents(t).ForEach(func(f, _ lua.LValue) {
				if s, ok := f.(lua.LString); ok {
					fields = append(fields, string(s))
				}
			})
			slices.Sort(fields)
		}
		out[string(name)] = fields
	})
	return out
}

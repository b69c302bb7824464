package engine

import (
	"github.com/luafw/luafw/internal/sandbox"
	lua "github.com/luafw/luafw/lua"
)

// Go values handed to scripts (net sets, domain sets, state handles) are
// userdata with a locked type metatable whose __index holds their methods.

// openType registers the metatable of userdata type typ with its methods;
// calling a method the type does not have is an error naming it.
func openType(L *lua.LState, typ string, methods map[string]lua.LGFunction) {
	mt := L.NewTypeMetatable(typ)
	index := L.SetFuncs(L.NewTable(), methods)
	sandbox.Strict(L, index, apiTypeTable(typ))
	mt.RawSetString("__index", index)
	mt.RawSetString("__metatable", lua.LString(sandbox.LockedMeta))
}

// pushUD returns v to the script with the methods of the type metatable typ.
func pushUD(L *lua.LState, v any, typ string) int {
	ud := L.NewUserData()
	ud.Value = v
	ud.Metatable = L.GetTypeMetatable(typ)
	L.Push(ud)
	return 1
}

// checkUD unwraps the method receiver (argument 1), raising a clear error
// when it is not a T.
func checkUD[T any](L *lua.LState, what string) T {
	v, ok := L.CheckUserData(1).Value.(T)
	if !ok {
		L.ArgError(1, "not a "+what)
	}
	return v
}

// pushResult returns true, or false and err's text.
func pushResult(L *lua.LState, err error) int {
	if err != nil {
		L.Push(lua.LFalse)
		L.Push(lua.LString(err.Error()))
		return 2
	}
	L.Push(lua.LTrue)
	return 1
}

package host

import lua "github.com/yuin/gopher-lua"

// protoModules returns the Go-backed protocol parser modules every plugin
// state gets as globals (e.g. dns, tls), by name.
func protoModules(L *lua.LState) map[string]lua.LValue {
	return map[string]lua.LValue{}
}

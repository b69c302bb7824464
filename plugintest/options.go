package plugintest

import (
	"strings"

	"github.com/luafw/luafw/internal/engine"
	"github.com/luafw/luafw/internal/sandbox"
	lua "github.com/luafw/luafw/lua"
)

// luaExpectOptionsChecked is expect_options_checked(path): the plugin
// declares its options with fw.schema, loads with none, and refuses, naming
// the option, an unknown option and a value of the wrong type for each one
// it declares. It returns the declarations, a list of {name =, type =,
// default =, values =, doc =} by name.
func (fr *fileRun) luaExpectOptionsChecked(L *lua.LState) int {
	spec := engine.PluginSpec{File: fr.inRoot(L, 1, L.CheckString(1))}
	h, err := fr.newHarness([]engine.PluginSpec{spec})
	if err != nil {
		L.RaiseError("expect_options_checked: without options: %v", err)
	}
	name := h.eng.Plugins()[0].Name
	opts, ok := h.eng.PluginOptions(name)
	if !ok {
		fr.failf(L, "%s declares no options (fw.schema)", spec.File)
		L.Push(L.NewTable())
		return 1
	}
	refused := func(options map[string]any, want string) {
		s := spec
		s.Options = options
		_, err := fr.newHarness([]engine.PluginSpec{s})
		if err == nil || !strings.Contains(err.Error(), want) {
			fr.failf(L, "%s with options %v: error %v, want one naming %s", spec.File, options, err, want)
		}
	}
	refused(map[string]any{"no_such_option": 1}, `option "no_such_option" is unknown`)
	out := L.CreateTable(len(opts), 0)
	for _, o := range opts {
		switch o.Type {
		case "any":
		case "table":
			refused(map[string]any{o.Name: "not a table"}, "option "+o.Name+":")
		default:
			refused(map[string]any{o.Name: map[string]any{"no": "list"}}, "option "+o.Name+":")
		}
		t := L.CreateTable(0, 5)
		t.RawSetString("name", lua.LString(o.Name))
		t.RawSetString("type", lua.LString(o.Type))
		t.RawSetString("default", lua.LString(o.Default))
		t.RawSetString("doc", lua.LString(o.Doc))
		vals := L.CreateTable(len(o.Values), 0)
		for _, v := range o.Values {
			vals.Append(lua.LString(v))
		}
		t.RawSetString("values", vals)
		out.Append(t)
	}
	L.Push(out)
	return 1
}

// Globals returns the names a test file sees besides the sandbox's
// standard library (sandbox.NewState), with the fields of those that are
// tables: what editor and lint definitions of the test API list. It is
// read from a real test state, so it cannot drift from newState.
func Globals() map[string][]string {
	L := (&fileRun{}).newState()
	defer L.Close()
	base := sandbox.NewState()
	defer base.Close()
	out := sandbox.Globals(L)
	for name := range sandbox.Globals(base) {
		delete(out, name)
	}
	return out
}

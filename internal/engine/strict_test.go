package engine

import (
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/luafw/luafw/internal/sandbox"
	lua "github.com/luafw/luafw/lua"
)

// A misspelled verdict used to be nil, and nil is accept: the packet
// passed and nothing was logged. Written out, the static checks refuse it
// at load (lint_test.go); computed at run time, it is a callback error:
// on_error and a log line naming the place and the field.
func TestMisspelledVerdictGetsOnError(t *testing.T) {
	e, logs := newTestEngine(t)
	spec := src("telnet", "local name = \"DORP\"\nfw.register{hook=\"input\", fn=function(pkt)\n  if pkt.dport == 23 then return fw[name] end\nend}")
	spec.OnError = Drop
	mustLoad(t, e, spec)
	d := e.Process(&Packet{Hook: Input, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 23, 0)})
	if d.Verdict != Drop || d.Errors != 1 {
		t.Fatalf("verdict %v errors %d, want drop by on_error", d.Verdict, d.Errors)
	}
	want := `telnet.lua:3: fw.DORP: no such field in fw (did you mean fw.DROP?)`
	if !strings.Contains(logs.String(), want) {
		t.Fatalf("log lacks %q: %s", want, logs.String())
	}
}

func TestStrictAPITables(t *testing.T) {
	for _, c := range []struct{ code, want string }{
		{"local s = net.sett{}", "x.lua:1: net.sett: no such field in net (did you mean net.set?)"},
		{"\nlocal r = fw.REJCT", "x.lua:2: fw.REJCT: no such field in fw (did you mean fw.REJECT?)"},
		{"local p = fw.priority.filtr", "x.lua:1: fw.priority.filtr: no such field in fw.priority (did you mean fw.priority.filter?)"},
		{"local m = state.map('m')\nlocal v = m:gte('k')", "x.lua:2: state.map.gte: no such field in state.map (did you mean state.map.get?)"},
		{"local n = time.nwo()", "x.lua:1: time.nwo: no such field in time (did you mean time.now?)"},
		{"log.inof('x')", "x.lua:1: log.inof: no such field in log (did you mean log.info?)"},
		{"local x = dns.parsee", "x.lua:1: dns.parsee: no such field in dns (did you mean dns.parse?)"},
		{"local x = packet.tpc", "x.lua:1: packet.tpc: no such field in packet (did you mean packet.tcp?)"},
		{"local x = fw.zzzzzzzz", "x.lua:1: fw.zzzzzzzz: no such field in fw"},
		{"local x = string.fromat('%d', 1)", "x.lua:1: string.fromat: no such field in string (did you mean string.format?)"},
	} {
		e, _ := newTestEngine(t)
		err := e.Load([]PluginSpec{src("x", c.code)})
		if err == nil || err.Error() != c.want {
			t.Errorf("%q: got %v, want %s", c.code, err, c.want)
		}
	}
	// What stays nil: list reads past the end, and the plugin's options.
	e, _ := newTestEngine(t)
	mustLoad(t, e, src("ok", `assert(fw.hooks[99] == nil); assert(fw.options.nosuch == nil); assert(fw.option("nosuch", 1) == 1)`))
	// The standard library is not strict: reading a name it lacks gives
	// nil, as in Lua 5.1, and the usual idioms keep working.
	e2, _ := newTestEngine(t)
	mustLoad(t, e2, src("std", `local unpack = table.unpack or unpack
assert(unpack({7}) == 7)
assert(math.tointeger == nil and string.pack == nil) -- Lua 5.3 names
local f = "fromat"
assert(string[f] == nil)`))
}

func TestPacketViewErrorsSuggest(t *testing.T) {
	e, logs := newTestEngine(t)
	// A name computed at run time, which the static checks cannot see.
	mustLoad(t, e, src("v", "fw.register{hook=\"input\", fn=function(pkt)\n local m = pkt[\"set_\" .. \"mrak\"]\nend}"))
	e.Process(&Packet{Hook: Input, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 23, 0)})
	if want := "v.lua:2: pkt.set_mrak: no such field in pkt (did you mean pkt.set_mark?)"; !strings.Contains(logs.String(), want) {
		t.Fatalf("log lacks %q: %s", want, logs.String())
	}
}

// probeState is a plugin state with the API modules but no chunk run.
func probeState(t *testing.T) *pluginState {
	e, _ := newTestEngine(t)
	p := &plugin{spec: PluginSpec{Name: "x", File: "x.lua"}.normalize()}
	ps := &pluginState{e: e, p: p, L: sandbox.NewState(), loading: true}
	t.Cleanup(ps.L.Close)
	ps.self = ps.L.NewUserData()
	ps.self.Value = ps
	return ps
}

// The registry is the tables the engine really builds: no name missing
// from it, none in it that the engine lacks.
func TestAPIRegistryMatchesModules(t *testing.T) {
	ps := probeState(t)
	ix := newAPIIndex()
	got := map[string][]string{}
	for _, m := range apiModules {
		got[m.name] = tableKeys(m.open(ps).(*lua.LTable))
	}
	for name, m := range protoModules(ps.L) {
		got[name] = tableKeys(m.(*lua.LTable))
	}
	openTimers(ps) // done in newPluginState, after the modules
	for table, typ := range apiTypes {
		got[table] = tableKeys(ps.L.GetTypeMetatable(typ).(*lua.LTable).RawGetString("__index").(*lua.LTable))
	}
	got["fw.priority"] = tableKeys(sandbox.Contents(openFw(ps).RawGetString("priority").(*lua.LTable)))
	var mods []string
	for _, m := range apiModules {
		mods = append(mods, m.name)
	}
	for name := range protoModules(ps.L) {
		mods = append(mods, name)
	}
	slices.Sort(mods)
	if want := slices.Sorted(slices.Values(apiModuleNames)); !slices.Equal(mods, want) {
		t.Errorf("modules %v, registry's apiModuleNames %v", mods, want)
	}
	for table, names := range got {
		if want := ix.names(table); !slices.Equal(names, want) {
			t.Errorf("%s: engine has %v, registry %v", table, names, want)
		}
	}
}

// Each packet view name in the registry answers, and each name the views'
// Go code answers (the string cases of their field functions) is in the
// registry.
func TestAPIRegistryMatchesPacketViews(t *testing.T) {
	ix := newAPIIndex()
	var code strings.Builder
	for _, table := range []string{"pkt", "pkt.tcp", "pkt.ct"} {
		for _, n := range ix.names(table) {
			code.WriteString("local _ = " + table + "." + n + "\n")
		}
	}
	e, logs := newTestEngine(t)
	mustLoad(t, e, src("views", "fw.register{hook=\"input\", fn=function(pkt)\n"+code.String()+"end}"))
	if d := e.Process(&Packet{Hook: Input, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 23, 0)}); d.Errors != 0 {
		t.Fatalf("a registry name of a packet view fails: %s", logs.String())
	}

	fset := token.NewFileSet()
	views := map[string]string{"pktField": "pkt", "pktMethod": "pkt", "rewriteMember": "pkt", "ctField": "pkt.ct", "tcpField": "pkt.tcp"}
	found := map[string]bool{}
	for _, file := range []string{"pktview.go", "pktview_rewrite.go", "pktview_ct.go", "pktview_tcp.go"} {
		f, err := parser.ParseFile(fset, file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || views[fd.Name.Name] == "" {
				continue
			}
			found[fd.Name.Name] = true
			ast.Inspect(fd.Body, func(n ast.Node) bool {
				if cc, ok := n.(*ast.CaseClause); ok {
					for _, x := range cc.List {
						if lit, ok := x.(*ast.BasicLit); ok && lit.Kind == token.STRING {
							name, _ := strconv.Unquote(lit.Value)
							if _, ok := ix[views[fd.Name.Name]][name]; !ok {
								t.Errorf("%s answers %q, which the registry lacks", fd.Name.Name, name)
							}
						}
					}
				}
				return true
			})
		}
	}
	if len(found) != len(views) {
		t.Fatalf("found view functions %v, want %v", found, views)
	}
}

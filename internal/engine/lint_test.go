package engine

import (
	"slices"
	"strings"
	"testing"
)

// Each mistake the static checks find, with the text `luafw check`, reload
// and run give; and what they must leave alone.
func TestLint(t *testing.T) {
	for _, c := range []struct {
		name, code string
		want       []string // "E line: msg" for errors, "W line: msg" for warnings
	}{
		{"verdict", "fw.register{hook='input', fn=function(pkt)\n return fw.DORP end}",
			[]string{"E 2: fw.DORP: no such field in fw (did you mean fw.DROP?)"}},
		{"api function at load", "local s = net.sett{}",
			[]string{"E 1: net.sett: no such field in net (did you mean net.set?)"}},
		{"nested table", "local p = fw.priority.filtr",
			[]string{"E 1: fw.priority.filtr: no such field in fw.priority (did you mean fw.priority.filter?)"}},
		{"packet field", "fw.register{hook='input', fn=function(pkt)\n if pkt.dprot == 22 then return fw.DROP end end}",
			[]string{"E 2: pkt.dprot: no such field in pkt (did you mean pkt.dport?)"}},
		{"packet method, callback by name", "local function policy(p)\n p:set_mrak(1)\nend\nfw.register{hook='input', fn=policy}",
			[]string{"E 2: pkt.set_mrak: no such field in pkt (did you mean pkt.set_mark?)"}},
		{"views", "fw.register{hook='input', fn=function(pkt)\n pkt.ct:set_lable(1)\n return pkt.tcp.syns end}",
			[]string{"E 2: pkt.ct.set_lable: no such field in pkt.ct (did you mean pkt.ct.set_label?)", "E 3: pkt.tcp.syns: no such field in pkt.tcp (did you mean pkt.tcp.syn?)"}},
		{"field called as method", "fw.register{hook='input', fn=function(pkt) return pkt:dport() end}",
			[]string{"E 1: pkt.dport is a field, not a method (pkt:dport() calls it)"}},
		{"stdlib", "local s = string.fromat('%d', 1)",
			[]string{"E 1: string.fromat: no such field in string (did you mean string.format?)"}},
		{"stdlib read, not called", "local unpack = table.unpack or unpack\nlocal pow = math.pow", nil},
		{"assignment to API", "fw.DROP = 1\nfw.priority.mine = 2\nfw = nil",
			[]string{"W 1: assignment to fw.DROP: fw is read-only (an error when it runs)",
				"W 2: assignment to fw.priority.mine: fw.priority is read-only (an error when it runs)",
				"W 3: assignment to fw replaces a module of the API"}},
		{"packet assignment", "fw.register{hook='input', fn=function(pkt) pkt.mark = 1 end}",
			[]string{"W 1: assignment to pkt.mark: pkt is read-only (an error when it runs)"}},
		{"global in callback", "fw.register{hook='input', fn=function(pkt)\n hits = (hits or 0) + 1\nend}",
			[]string{"W 2: global hits is assigned inside a function: each worker has its own Lua state, so it is neither shared nor reset; make it local (at the top level) or use state.map"}},
		{"global function in function", "local function f()\n function g() end\nend",
			[]string{"W 2: global g is assigned inside a function: each worker has its own Lua state, so it is neither shared nor reset; make it local (at the top level) or use state.map"}},
		{"fine", `
			local n = 0            -- a top-level local changed in a callback is the script's own
			top = 1                -- a global set at the top level
			local fw2 = fw
			local t = {}
			fw.options.extra = 1   -- options are a plain table
			local function helper(pkt) return pkt.whatever end -- not a callback's parameter
			fw.register{hook = "input", fn = function(pkt)
				n = n + 1
				t.x = pkt.dport
				local pkt = {dprot = 1} -- shadowed: the script's own
				return pkt.dprot == 1 and fw.DROP or fw.ACCEPT
			end}
			fw.register{hook = "input", fn = function(p, extra) local fw = {} ; return fw.DORP end}
			local ok = pcall(function() local x = fw.priority.filter + #fw.hooks end)
			for _, h in ipairs(fw.hooks) do local _ = h end`, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			fs, err := Lint(src("x", c.code))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range fs {
				k := "W"
				if f.Error {
					k = "E"
				}
				if f.File != "x.lua" {
					t.Errorf("file %q", f.File)
				}
				got = append(got, k+" "+itoa(f.Line)+": "+f.Msg)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}

// The checks run at load: errors refuse it, warnings are reported (and
// refuse it in strict mode).
func TestLintAtLoad(t *testing.T) {
	e, logs := newTestEngine(t)
	err := e.Load([]PluginSpec{src("x", "fw.register{hook='input', fn=function(pkt)\n return pkt.dprot end}")})
	if err == nil || err.Error() != "x.lua:2: pkt.dprot: no such field in pkt (did you mean pkt.dport?)" {
		t.Fatalf("load error %v", err)
	}
	warn := "fw.register{hook='input', fn=function(pkt)\n hits = 1\nend}"
	mustLoad(t, e, src("w", warn))
	if !strings.Contains(logs.String(), "global hits is assigned inside a function") || !strings.Contains(logs.String(), "at=w.lua:2") {
		t.Fatalf("warning not logged with file:line: %s", logs.String())
	}
	strict := New(Options{StrictChecks: true})
	defer strict.Close()
	if err := strict.Load([]PluginSpec{src("w", warn)}); err == nil || !strings.HasPrefix(err.Error(), "w.lua:2: global hits") {
		t.Fatalf("strict load error %v", err)
	}
}

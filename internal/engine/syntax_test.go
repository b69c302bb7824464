package engine

import "testing"

// A syntax error is said once, and where the parser stopped because a
// block or bracket was left open, it says which and where.
func TestSyntaxErrorsPointAtTheOpening(t *testing.T) {
	for _, c := range []struct{ code, want string }{
		{"fw.register{hook='input', fn=function(pkt)\n  if pkt.dport == 23 then\n    return fw.DROP\n  if pkt.dport == 25 then return fw.DROP end\nend}",
			`x.lua:4: 'end' expected (to close 'if' at line 2) near "if"`},
		{"local function f()\n  local x = 1\n", "x.lua:3: 'end' expected (to close 'function' at line 1) near <eof>"},
		{"for i = 1, 3 do\n  local y = i\n", "x.lua:3: 'end' expected (to close 'for' at line 1) near <eof>"},
		{"while true do\n  do\n  end\n", "x.lua:4: 'end' expected (to close 'while' at line 1) near <eof>"},
		{"repeat\n  local x = 1\n", "x.lua:3: 'until' expected (to close 'repeat' at line 1) near <eof>"},
		{"local t = {1, 2\nlocal y = 3\n", `x.lua:2: '}' expected (to close '{' at line 1) near "local"`},
		{"local x = = 1", `x.lua:1: syntax error near "="`},
		{"local s = \"abc\n", `x.lua:2: syntax error near "abc": unterminated string`},
	} {
		e, _ := newTestEngine(t)
		err := e.Load([]PluginSpec{src("x", c.code)})
		if err == nil || err.Error() != c.want {
			t.Errorf("%q: got %v, want %s", c.code, err, c.want)
		}
	}
}

package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	lua "github.com/luafw/luafw/lua"
)

// patternCases are string-library calls and what C Lua 5.1.5 returns for
// them (generated with the lua5.1 interpreter; errors without the
// position prefix).
var patternCases = []struct{ expr, want string }{
	{`string.find("abc", "", 10)`, `4, 3`},
	{`string.find("abc", "", 4)`, `4, 3`},
	{`string.find("abc", "b", -1)`, `nil`},
	{`string.find("abc", "b", -2)`, `2, 2`},
	{`string.find("abc", "a", -10)`, `1, 1`},
	{`string.find("abc", "c", 3)`, `3, 3`},
	{`string.find("abc", "x*", 10)`, `4, 3`},
	{`string.match("abc", "()", 4)`, `4`},
	{`string.match("abc", "()", 5)`, `4`},
	{`string.match("hello", ".", -2)`, `"l"`},
	{`string.match("hello", "(h)(e)(l)")`, `"h", "e", "l"`},
	{`string.find("hello", "(l)(l)")`, `3, 4, "l", "l"`},
	{`string.find("hello", "()ll()")`, `3, 4, 3, 5`},
	{`string.find("a.b", ".", 1, true)`, `2, 2`},
	{`string.find("a.b", "%.", 1)`, `2, 2`},
	{`string.find("abc", "b", 1, "yes")`, `2, 2`},
	{`string.find("a+b", "+", 1)`, `2, 2`},
	{`string.find("a$b", "a$b")`, `1, 3`},
	{`string.find("a^b", "a^b")`, `1, 3`},
	{`string.find("a^b", "^b")`, `nil`},
	{`string.find("  x", "^%s*")`, `1, 2`},
	{`string.find("x", "^$")`, `nil`},
	{`string.find("", "^$")`, `1, 0`},
	{`string.match("x(a(b)c)y", "%b()")`, `"(a(b)c)"`},
	{`string.match("x(a(b)c", "%b()")`, `"(b)"`},
	{`string.match("THE (quick) fox", "%f[%a]%a+%f[%A]")`, `"THE"`},
	{`string.match("aa", "()%1")`, `nil`},
	{`string.find("aa", "(a)%1")`, `1, 2, "a"`},
	{`string.match("\0a\0", "%z(.)%z")`, `"a"`},
	{`string.match("a\0b", "%Z+")`, `"a"`},
	{`string.find("-", "[%a-z]")`, `1, 1`},
	{`string.find("b", "[%a-z]")`, `1, 1`},
	{`string.find("]", "[]]")`, `1, 1`},
	{`string.find("^", "[]^]")`, `1, 1`},
	{`string.find("a", "[^]a]")`, `nil`},
	{`string.find("-", "[a-]")`, `1, 1`},
	{`string.find("-", "[-a]")`, `1, 1`},
	{`string.find("b", "[a-c-e]")`, `1, 1`},
	{`string.find("d", "[a-c-e]")`, `nil`},
	{`string.find("-", "[a-c-e]")`, `1, 1`},
	{`string.match("key = value", "(%w+)%s*=%s*(%w+)")`, `"key", "value"`},
	{`string.match("2024-01-02", "(%d+)-(%d+)-(%d+)")`, `"2024", "01", "02"`},
	{`string.match("abc", "a-b")`, `"ab"`},
	{`string.match("aaab", "a-b")`, `"aaab"`},
	{`string.match("abc", ".-")`, `""`},
	{`string.match("abc", ".-$")`, `"abc"`},
	{`string.match("abc", "a?b?c?d?")`, `"abc"`},
	{`string.match("[[x]]", "%[(%b[])%]")`, `"[x]"`},
	{`string.match("\t\n\v\f\r ", "%s+")`, `"\x09\x0a\x0b\x0c\x0d "`},
	{"string.match(\"!\\\"#$%&'()*+,-./:;<=>?@[\\\\]^_`{|}~\", \"%p+\")", "\"!\\\"#$%&'()*+,-./:;<=>?@[\\\\]^_`{|}~\""},
	{`string.match("\127\0\31", "%c+")`, `"\x7f\x00\x1f"`},
	{`string.match("aBc", "%u")`, `"B"`},
	{`string.match("aBc", "%L+")`, `"B"`},
	{`string.match("0x1F", "%x+", 3)`, `"1F"`},
	{`string.match("abc", "%X+")`, `nil`},
	{`string.match("\200\201", "[\200-\210]+")`, `"\xc8\xc9"`},
	{`string.match("\200\201", "%W+")`, `"\xc8\xc9"`},
	{`string.gsub("hello world", "o", "0")`, `"hell0 w0rld", 2`},
	{`string.gsub("hello world", "o", "0", 1)`, `"hell0 world", 1`},
	{`string.gsub("hello world", "o", "0", 0)`, `"hello world", 0`},
	{`string.gsub("hello world", "o", "0", -1)`, `"hello world", 0`},
	{`string.gsub("hello world", "o", "0", 1.9)`, `"hell0 world", 1`},
	{`string.gsub("aaa", "^a", "b")`, `"baa", 1`},
	{`string.gsub("aaa", "^", "b")`, `"baaa", 1`},
	{`string.gsub("aaa", "$", "b")`, `"aaab", 1`},
	{`string.gsub("abc", "", "-")`, `"-a-b-c-", 4`},
	{`string.gsub("abc", ".-", "-")`, `"-a-b-c-", 4`},
	{`string.gsub("abc", "b*", "-")`, `"-a--c-", 4`},
	{`string.gsub("a", "a", "%%")`, `"%", 1`},
	{`string.gsub("a", "a", "x%")`, `"x\x00", 1`},
	{`string.gsub("a", "a", "%a%")`, `"a\x00", 1`},
	{`string.gsub("abc", "b", 5)`, `"a5c", 1`},
	{`string.gsub("abc", "b", 5.5)`, `"a5.5c", 1`},
	{`string.gsub("abc", "(b)", "[%1%0%1]")`, `"a[bbb]c", 1`},
	{`string.gsub("abc", "()b()", "%1-%2")`, `"a2-3c", 1`},
	{`string.gsub("hello world", "o", "%1")`, `"hello world", 2`},
	{`string.gsub("abc", "b", "%2")`, `error: invalid capture index`},
	{`string.gsub("abc", "b", {b=false})`, `"abc", 1`},
	{`string.gsub("abc", "b", {b="B"})`, `"aBc", 1`},
	{`string.gsub("abc", "b", {b=7})`, `"a7c", 1`},
	{`string.gsub("abc", "(b)(c)", {b="X"})`, `"aX", 1`},
	{`string.gsub("abc", "()", {[2]="X"})`, `"aXbc", 4`},
	{`string.gsub("abc", "b", {b={}})`, `error: invalid replacement value (a table)`},
	{`string.gsub("abc", "b", {b=true})`, `error: invalid replacement value (a boolean)`},
	{`string.gsub("abc", "b", function() return {} end)`, `error: invalid replacement value (a table)`},
	{`string.gsub("abc", "b", function() return 7 end)`, `"a7c", 1`},
	{`string.gsub("abc", "b", function() return nil end)`, `"abc", 1`},
	{`string.gsub("abc", "b", function() return false end)`, `"abc", 1`},
	{`string.gsub("abc", "(b)(c)", function(x, y) return y..x end)`, `"acb", 1`},
	{`string.gsub("abc", "b", true)`, `error: bad argument #3 to 'gsub' (string/function/table expected)`},
	{`string.gsub("abc", "b")`, `error: bad argument #3 to 'gsub' (string/function/table expected)`},
	{`string.gsub("abc", "()", "%1")`, `"1a2b3c4", 4`},
	{`string.gsub("hello", "l+", "L")`, `"heLo", 1`},
	{`string.gsub("x = 1, y = 2", "(%w+) = (%w+)", "%2 = %1")`, `"1 = x, 2 = y", 2`},
	{`string.find("a", "%")`, `error: malformed pattern (ends with '%')`},
	{`string.find("a", "[a")`, `error: malformed pattern (missing ']')`},
	{`string.find("a", "[a%")`, `error: malformed pattern (missing ']')`},
	{`string.find("a", "[]")`, `error: malformed pattern (missing ']')`},
	{`string.find("a", "[^]")`, `error: malformed pattern (missing ']')`},
	{`string.find("a", "%f")`, `error: missing '[' after '%f' in pattern`},
	{`string.find("a", "%fa")`, `error: missing '[' after '%f' in pattern`},
	{`string.find("a", "%b")`, `error: unbalanced pattern`},
	{`string.find("a", "%ba")`, `error: unbalanced pattern`},
	{`string.find("a", "(%0)")`, `error: invalid capture index`},
	{`string.find("a", "(a)%2")`, `error: invalid capture index`},
	{`string.find("a", "%1")`, `error: invalid capture index`},
	{`string.find("a", "(a%1)")`, `error: invalid capture index`},
	{`string.find("a", "(a")`, `error: unfinished capture`},
	{`string.match("a", "(a")`, `error: unfinished capture`},
	{`string.match("a", "a)")`, `error: invalid pattern capture`},
	{`string.find("a", "b%")`, `nil`},
	{`string.find("a", "a%")`, `error: malformed pattern (ends with '%')`},
	{`string.find("", "%")`, `error: malformed pattern (ends with '%')`},
	{`string.find(string.rep("x", 10), string.rep("()", 32))`, `1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1`},
	{`string.find(string.rep("x", 10), string.rep("()", 33))`, `error: too many captures`},
	{`string.find(123, 2)`, `2, 2`},
	{`string.find("abc", "b", "2")`, `2, 2`},
	{`string.match("abc", "()b()c()")`, `2, 3, 4`},
	{`string.gsub("abc def", "%f[%w]%w+", "<%0>")`, `"<abc> <def>", 2`},
	{`string.gsub("THE (quick) fox", "%f[%a]", "|")`, `"|THE (|quick) |fox", 3`},
	{`string.gsub("abc", "%f[%z]", "|")`, `"abc|", 1`},
	{`string.gsub("abc", "%f[^%z]", "|")`, `"|abc", 1`},
	{`string.gsub("a,b,,c", ",", ";")`, `"a;b;;c", 3`},
	{`string.gsub("  trim  ", "^%s*(.-)%s*$", "%1")`, `"trim", 1`},
	{`string.gsub("\0\0", "%z", "z")`, `"zz", 2`},
	{`string.find("a\0b", "\0")`, `2, 2`},
	{`string.find("a\0b", "%z")`, `2, 2`},
	// Deviation on purpose: a NUL in a pattern is a character (as in Lua
	// 5.2 and gopher-lua); C Lua 5.1 stops reading the pattern there.
	{`string.find("a\0b", "[\0]")`, `2, 2`},
	// Sets where gopher-lua's own matcher answers otherwise.
	{`string.find("0", "[0-0-0]")`, `1, 1`},
	{`string.find("0000000", "[1-%0]", -7)`, `1, 1`},
	{`string.find("0", "[0--1]")`, `nil`},
	{`string.find("1", "[0--1]")`, `1, 1`},
	{`string.find("\0", "[%A-0]")`, `1, 1`},
	{`string.match("(x)", "%((%a)%)", 1)`, `"x"`},
	{`string.find("abc", "b", 10)`, `nil`},
	{`string.find("abc", "", 10, true)`, `4, 3`},
	{`string.gsub("abc", "%w", "%%%0")`, `"%a%b%c", 3`},
	// gmatch: '^' is an ordinary character, empty matches advance, errors
	// come from the iterator.
	{`(function() local t = {} for a in string.gmatch("^a^a", "^a") do t[#t+1] = a end return table.concat(t, "|") end)()`, `"^a|^a"`},
	{`(function() local t = {} for a in string.gmatch("abc", "a*") do t[#t+1] = a end return table.concat(t, "|") end)()`, `"a|||"`},
	{`(function() local t = {} for a, b in string.gmatch("k1=v1, k2=v2", "(%w+)=(%w+)") do t[#t+1] = a .. ":" .. b end return table.concat(t, "|") end)()`, `"k1:v1|k2:v2"`},
	{`(function() local t = {} for a in string.gmatch("abc", "()") do t[#t+1] = a end return table.concat(t, "|") end)()`, `"1|2|3|4"`},
	{`(function() local t = {} for a in string.gmatch("abc", "$") do t[#t+1] = "[" .. a .. "]" end return table.concat(t, "|") end)()`, `"[]"`},
	{`(function() local t = {} for a in string.gmatch("a b", "%f[%w]%w*") do t[#t+1] = a end return table.concat(t, "|") end)()`, `"a|b"`},
	{`(function() local it = string.gmatch("ab", "x") return it(), it() end)()`, `nil`},
	{`(pcall(string.gmatch("a", "%")))`, `false`},
	{`(function() local t = {} for a in string.gmatch("one two  three", "%a+") do t[#t+1] = a end return table.concat(t, "|") end)()`, `"one|two|three"`},
	// Lua 5.2's recursion limit (Lua 5.1 has none and overflows the C stack
	// on deep enough patterns).
	{`string.find(string.rep("a", 300), string.rep("a?", 300))`, `error: pattern too complex`},
	{`string.find(string.rep("a", 150), string.rep("a?", 150))`, `1, 150`},
	{`string.gsub(string.rep("x", 2^20 - 1), "x", "yy")`, `error: string.gsub: result exceeds the sandbox limit of 1048576 bytes`},
	{`#string.gsub(string.rep("x", 2^19), "x", "yy")`, `1048576`},
	{`#string.gsub(string.rep("x", 2^20), "x", "")`, `0`},
}

// luaRepr writes v as the case tables spell values: strings quoted with
// non-printable bytes as \xHH, everything else as tostring shows it.
func luaRepr(v lua.LValue) string {
	s, ok := v.(lua.LString)
	if !ok {
		return v.String()
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 32 || c > 126:
			fmt.Fprintf(&b, "\\x%02x", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// evalExpr evaluates the Lua expression expr in L and returns its values
// as luaRepr spells them, or "error: " and the message.
func evalExpr(L *lua.LState, expr string) string {
	fn, err := L.LoadString("return " + expr)
	if err != nil {
		return "error: " + err.Error()
	}
	top := L.GetTop()
	L.Push(fn)
	if err := L.PCall(0, lua.MultRet, nil); err != nil {
		msg := err.Error()
		if ae, ok := err.(*lua.ApiError); ok {
			msg = ae.Object.String()
		}
		return "error: " + msg
	}
	var out []string
	for i := top + 1; i <= L.GetTop(); i++ {
		out = append(out, luaRepr(L.Get(i)))
	}
	L.SetTop(top)
	return strings.Join(out, ", ")
}

func TestPatternCases(t *testing.T) {
	L := NewState()
	defer L.Close()
	for _, tc := range patternCases {
		got := evalExpr(L, tc.expr)
		if msg, isErr := strings.CutPrefix(tc.want, "error: "); isErr {
			// gopher-lua's argument errors do not quote the function
			// name (bad argument #3 to gsub), Lua's do ('gsub').
			unquote := func(s string) string { return strings.ReplaceAll(s, "'", "") }
			if !strings.HasPrefix(got, "error: ") || !strings.HasSuffix(unquote(got), unquote(msg)) {
				t.Errorf("%s = %s, want an error ending in %q", tc.expr, got, msg)
			}
			continue
		}
		if got != tc.want {
			t.Errorf("%s = %s, want %s", tc.expr, got, tc.want)
		}
	}
}

// TestLua51Suite runs Lua 5.1's own tests of patterns and strings (see the
// notes at the top of each file for what was cut) in the sandbox.
func TestLua51Suite(t *testing.T) {
	for _, name := range []string{"pm.lua", "strings.lua"} {
		t.Run(name, func(t *testing.T) {
			code, err := os.ReadFile(filepath.Join("testdata", "lua5.1-tests", name))
			if err != nil {
				t.Fatal(err)
			}
			L := NewState()
			defer L.Close()
			L.SetGlobal("print", L.NewFunction(func(*lua.LState) int { return 0 }))
			if err := L.DoString(string(code)); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		})
	}
}

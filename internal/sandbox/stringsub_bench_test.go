package sandbox

import (
	"testing"

	lua "github.com/luafw/luafw/lua"
)

// BenchmarkSubstrings: the builtins that return pieces of their argument or
// map its bytes, on the 512-byte benchPayload (global P), as a plugin calls
// them on a packet.
func BenchmarkSubstrings(b *testing.B) {
	for _, c := range []struct{ name, code string }{
		{"sub-4", `local a = P:sub(1, 4)`},
		{"sub-96", `local a = P:sub(5, 100)`},
		{"sub-tail", `local a = P:sub(2)`},
		{"match-capture", "local h = P:match(\"Host: ([^\\r\\n]+)\")"},
		{"find-capture", `local i, j, v = P:find("(HTTP/%d%.%d)")`},
		{"gmatch-words", `for w in P:gmatch("%a+") do end`},
		{"gsub-fn", `local s = P:sub(1, 64):gsub("%a+", function(w) return w end)`},
		{"upper", `local s = P:upper()`},
		{"lower", `local s = P:lower()`},
		{"reverse", `local s = P:reverse()`},
	} {
		b.Run(c.name, func(b *testing.B) {
			L := NewState()
			defer L.Close()
			L.SetGlobal("P", lstr(benchPayload))
			benchChunk(b, L, c.code)
		})
	}
}

func lstr(s string) lua.LString { return lua.LString(s) }

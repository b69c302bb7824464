package sandbox

import (
	"testing"

	lua "github.com/luafw/luafw/lua"
)

// The cost of the worst single table instruction at the array bound, and of
// ordinary builtin calls in the sandbox against stock gopher-lua.

func benchChunk(b *testing.B, L *lua.LState, code string) {
	b.Helper()
	fn, err := L.LoadString(code)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		L.Push(fn)
		if err := L.PCall(0, 0, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkArrayBound: one instruction, t[MaxArrayIndex-1] = 1 on an empty
// table (gopher-lua pads the array part with nils up to the key), and #t
// on a table padded that way.
func BenchmarkArrayBound(b *testing.B) {
	L := NewState()
	defer L.Close()
	L.SetGlobal("N", lua.LNumber(MaxArrayIndex-1))
	b.Run("pad", func(b *testing.B) { benchChunk(b, L, `local t = {} t[N] = 1`) })
	if err := L.DoString(`P = {} P[N] = 1 P[N] = nil`); err != nil {
		b.Fatal(err)
	}
	b.Run("len", func(b *testing.B) { benchChunk(b, L, `local n = #P`) })
}

func BenchmarkBuiltins(b *testing.B) {
	for _, c := range []struct{ name, code string }{
		{"format", `local s = string.format("%s:%d %5.2f %x", "host", 443, 3.14159, 255)`},
		{"rep", `local s = string.rep("ab", 16)`},
		{"concat", `local s = table.concat({"a", "b", "c", 1, 2}, ",")`},
		{"insert-remove", `local t = {} for i = 1, 8 do table.insert(t, i) end for i = 1, 8 do table.remove(t) end`},
		{"pop", `local t = {} for i = 1, 1000 do t[i] = i end for i = 1, 1000 do table.remove(t) end`},
		{"sort", `local t = {5, 3, 8, 1, 9, 2, 7, 4, 6, 0} table.sort(t)`},
		{"ipairs", `local s = 0 for _, v in ipairs({1, 2, 3, 4, 5, 6, 7, 8}) do s = s + v end`},
		{"tostring-number", `local s = tostring(12345)`},
	} {
		b.Run(c.name+"/sandbox", func(b *testing.B) {
			L := NewState()
			defer L.Close()
			benchChunk(b, L, c.code)
		})
		b.Run(c.name+"/stock", func(b *testing.B) {
			L := lua.NewState()
			defer L.Close()
			benchChunk(b, L, c.code)
		})
	}
}

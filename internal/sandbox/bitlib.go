package sandbox

import (
	"fmt"
	"math"

	lua "github.com/luafw/luafw/lua"
)

// bitModule is bit.band/bor/bxor/bnot/lshift/rshift/tohex: Lua 5.1 has no
// bitwise operators, and marks and flags need them. Like LuaJIT's bit
// module, but results are unsigned 32-bit (0..0xffffffff), as marks are.
func OpenBit(L *lua.LState) *lua.LTable {
	fold := func(op func(a, b uint32) uint32) lua.LGFunction {
		return func(L *lua.LState) int {
			acc := checkBits(L, 1)
			for i := 2; i <= L.GetTop(); i++ {
				acc = op(acc, checkBits(L, i))
			}
			L.Push(lua.LNumber(acc))
			return 1
		}
	}
	shift := func(op func(a uint32, n uint) uint32) lua.LGFunction {
		return func(L *lua.LState) int {
			a, n := checkBits(L, 1), L.CheckInt(2)
			if n < 0 || n > 31 {
				L.ArgError(2, "shift must be 0..31")
			}
			L.Push(lua.LNumber(op(a, uint(n))))
			return 1
		}
	}
	return L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
		"band": fold(func(a, b uint32) uint32 { return a & b }),
		"bor":  fold(func(a, b uint32) uint32 { return a | b }),
		"bxor": fold(func(a, b uint32) uint32 { return a ^ b }),
		"bnot": func(L *lua.LState) int {
			L.Push(lua.LNumber(^checkBits(L, 1)))
			return 1
		},
		"lshift": shift(func(a uint32, n uint) uint32 { return a << n }),
		"rshift": shift(func(a uint32, n uint) uint32 { return a >> n }),
		"btest": func(L *lua.LState) int {
			L.Push(lua.LBool(checkBits(L, 1)&checkBits(L, 2) != 0))
			return 1
		},
		"tohex": func(L *lua.LState) int {
			L.Push(lua.LString(fmt.Sprintf("0x%08x", checkBits(L, 1))))
			return 1
		},
	})
}

// checkBits reads an integer argument as 32 bits (negative numbers wrap, as
// in two's complement).
func checkBits(L *lua.LState, n int) uint32 {
	v := float64(L.CheckNumber(n))
	if v != math.Trunc(v) || v < math.MinInt32 || v > math.MaxUint32 {
		L.ArgError(n, fmt.Sprintf("want an integer that fits 32 bits, got %v", v))
	}
	return uint32(int64(v))
}

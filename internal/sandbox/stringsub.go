package sandbox

import (
	"strings"
	"unsafe"

	lua "github.com/luafw/luafw/lua"
)

// Substrings and the byte-mapping functions (sub, upper, lower, reverse).
//
// A Go substring shares its source's bytes, so a 1-byte string.sub of a
// 1 MiB string kept the whole MiB alive while the plugin memory walk
// (internal/engine/pluginmemory.go) counted one byte: 125 MiB held under a
// 16 MiB limit. The walk cannot see what a substring pins (only its own
// pointer and length), so the builtins that return pieces of their argument
// (sub, and the captures and whole matches of find, match, gmatch and
// gsub's function and table replacements) copy a piece that is small
// beside its source: a result may pin at most twice its own length plus
// pinSlack bytes, so the walk undercounts a kept string by at most that
// factor. Pieces of a packet payload of a few hundred bytes are mostly
// copied (an allocation of their own size, which converting to a Lua value
// already nearly costs); s:sub(2) and the like share.

// pinSlack is how many bytes beyond twice its length a substring may keep
// alive in its source without being copied.
const pinSlack = 64

// piece is s[i:j] as a Lua string that does not pin much more of s than it
// holds.
func piece(s string, i, j int) lua.LString {
	p := s[i:j]
	if len(s)-len(p) > len(p)+pinSlack {
		return lua.LString(strings.Clone(p))
	}
	return lua.LString(p)
}

// strSub is string.sub(s, i [, j]) (Lua 5.1's str_sub), through piece.
func strSub(L *lua.LState) int {
	s := L.CheckString(1)
	l := len(s)
	posrelat := func(pos int) int {
		if pos < 0 {
			return l + pos + 1
		}
		return pos
	}
	start := posrelat(int(L.CheckNumber(2)))
	end := posrelat(optInt(L, 3, -1))
	start = max(start, 1)
	end = min(end, l)
	if start > end {
		L.Push(lua.LString(""))
		return 1
	}
	L.Push(piece(s, start-1, end))
	return 1
}

// mapBytes returns s with each byte c replaced by table[c], refusing a
// result over maxStringResult before building it and looking at the budget
// every checkEvery 64-byte units (one look per 64 KiB).
func mapBytes(L *lua.LState, name string, s string, table *[256]byte) lua.LString {
	if len(s) > maxStringResult {
		L.RaiseError("string.%s: result of %d bytes exceeds the sandbox limit of %d bytes", name, len(s), maxStringResult)
	}
	m := Meter(L)
	buf := make([]byte, len(s))
	for off := 0; off < len(s); off += mapChunk {
		end := min(off+mapChunk, len(s))
		for i := off; i < end; i++ {
			buf[i] = table[s[i]]
		}
		m.Step(1 + (end-off)/64)
	}
	return lua.LString(unsafe.String(unsafe.SliceData(buf), len(buf))) // buf is not written again
}

// mapChunk is how many bytes mapBytes and strReverse copy between two
// meter steps.
const mapChunk = 64 * checkEvery

// Lua 5.1 maps bytes with C's toupper/tolower in the "C" locale: ASCII
// letters only. (gopher-lua used strings.ToUpper, which also maps UTF-8
// letters and turns each invalid byte into the 3-byte U+FFFD.)
var upperTable, lowerTable = func() (u, l [256]byte) {
	for i := range 256 {
		u[i], l[i] = byte(i), byte(i)
		if 'a' <= i && i <= 'z' {
			u[i] = byte(i - 'a' + 'A')
		}
		if 'A' <= i && i <= 'Z' {
			l[i] = byte(i - 'A' + 'a')
		}
	}
	return
}()

func strUpper(L *lua.LState) int {
	L.Push(mapBytes(L, "upper", L.CheckString(1), &upperTable))
	return 1
}

func strLower(L *lua.LState) int {
	L.Push(mapBytes(L, "lower", L.CheckString(1), &lowerTable))
	return 1
}

// strReverse is string.reverse(s), bounded and budgeted like mapBytes.
func strReverse(L *lua.LState) int {
	s := L.CheckString(1)
	if len(s) > maxStringResult {
		L.RaiseError("string.reverse: result of %d bytes exceeds the sandbox limit of %d bytes", len(s), maxStringResult)
	}
	m := Meter(L)
	buf := make([]byte, len(s))
	for off := 0; off < len(s); off += mapChunk {
		end := min(off+mapChunk, len(s))
		for i := off; i < end; i++ {
			buf[len(s)-1-i] = s[i]
		}
		m.Step(1 + (end-off)/64)
	}
	L.Push(lua.LString(unsafe.String(unsafe.SliceData(buf), len(buf))))
	return 1
}

// openSubFuncs puts sub, upper, lower and reverse into the string table.
func openSubFuncs(L *lua.LState, str *lua.LTable) {
	for name, fn := range map[string]lua.LGFunction{
		"sub": strSub, "upper": strUpper, "lower": strLower, "reverse": strReverse,
	} {
		str.RawSetString(name, L.NewFunction(fn))
	}
}

package sandbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"regexp"
	"strconv"
	"strings"
	"unsafe"

	lua "github.com/luafw/luafw/lua"
)

// Sandboxed replacements for base-library functions: tostring without Go
// heap addresses, and ipairs/unpack that see a whole list (see
// tablelib.go for why a list may continue past the array part).

// idsKey is the registry field holding a state's objectIDs. Scripts cannot
// reach the registry (no debug library).
const idsKey = "luafw.objectids"

// maxUnpack is how many values one unpack call may return, as in Lua 5.1
// (whose stack check fails beyond LUAI_MAXCSTACK = 8000).
const maxUnpack = 8000

// objectIDs names a state's tables, functions, userdata and threads for
// tostring: "table: 0x" and 16 hex digits. The id is the object's Go address
// put through a 64-bit keyed permutation (a four-round Feistel network with
// AES-128 as its round function, under a key drawn for the state), so it
// is unique and stable for the object's lifetime (Go's collector does not
// move heap objects, and a Feistel network is a bijection whatever its
// round function) but reveals nothing about the Go heap's layout. Nothing
// is stored per object. The key schedule (under 200 bytes) is made on a
// state's first tostring of such a value; an id costs four AES blocks.
type objectIDs struct{ block cipher.Block }

func newObjectIDs() *objectIDs {
	var key [16]byte
	_, _ = rand.Read(key[:]) // never fails (it crashes the program if it cannot read)
	block, err := aes.NewCipher(key[:])
	if err != nil {
		panic(err) // only for a wrong key length
	}
	return &objectIDs{block: block}
}

func (o *objectIDs) id(addr uintptr) uint64 {
	l, r := uint32(uint64(addr)>>32), uint32(addr)
	var in, out [aes.BlockSize]byte
	for round := byte(0); round < 4; round++ {
		in[0] = round
		binary.BigEndian.PutUint32(in[1:], r)
		o.block.Encrypt(out[:], in[:])
		l, r = r, l^binary.BigEndian.Uint32(out[:])
	}
	return uint64(l)<<32 | uint64(r)
}

// stateIDs returns L's objectIDs, making them on first use.
func stateIDs(L *lua.LState) *objectIDs {
	reg := L.G.Registry
	if ud, ok := reg.RawGetString(idsKey).(*lua.LUserData); ok {
		if ids, ok := ud.Value.(*objectIDs); ok {
			return ids
		}
	}
	ids := newObjectIDs()
	ud := L.NewUserData()
	ud.Value = ids
	reg.RawSetString(idsKey, ud)
	return ids
}

// objectName is tostring without metamethods: what Lua prints for v.
func ObjectName(L *lua.LState, v lua.LValue) string {
	var kind string
	var p unsafe.Pointer
	switch x := v.(type) {
	case *lua.LTable:
		kind, p = "table", unsafe.Pointer(x)
	case *lua.LFunction:
		kind, p = "function", unsafe.Pointer(x)
	case *lua.LUserData:
		kind, p = "userdata", unsafe.Pointer(x)
	case *lua.LState:
		kind, p = "thread", unsafe.Pointer(x)
	case lua.LChannel:
		kind, p = "channel", *(*unsafe.Pointer)(unsafe.Pointer(&x)) // a chan is a pointer
	default:
		return v.String() // nil, booleans, numbers, strings
	}
	return formatObjectName(L, kind, uintptr(p))
}

func formatObjectName(L *lua.LState, kind string, addr uintptr) string {
	var b [40]byte
	out := append(b[:0], kind...)
	out = append(out, ": 0x"...)
	id := strconv.AppendUint(nil, stateIDs(L).id(addr), 16)
	for i := len(id); i < 16; i++ {
		out = append(out, '0')
	}
	out = append(out, id...)
	return string(out)
}

// goAddress matches how gopher-lua names an object in its own error
// messages (Go's %p), e.g. indexing a number with a table key. A user-space
// address has at most 12 hex digits; the ids of objectName always have 16,
// so a message quoting tostring's result is left alone.
var goAddress = regexp.MustCompile(`\b(table|function|userdata|thread|channel): 0x[0-9a-f]{1,12}\b`)

// hideAddresses rewrites the Go addresses in msg as the ids tostring
// shows for the same objects.
func hideAddresses(L *lua.LState, msg string) string {
	if !strings.Contains(msg, ": 0x") {
		return msg
	}
	return goAddress.ReplaceAllStringFunc(msg, func(m string) string {
		kind, hex, _ := strings.Cut(m, ": 0x")
		addr, err := strconv.ParseUint(hex, 16, 64)
		if err != nil {
			return m
		}
		return formatObjectName(L, kind, uintptr(addr))
	})
}

// protectedCall wraps pcall or xpcall so that an error message it returns
// shows no Go address.
func protectedCall(orig lua.LGFunction) lua.LGFunction {
	return func(L *lua.LState) int {
		n := orig(L)
		if n >= 2 && L.Get(-n) == lua.LFalse {
			if msg, ok := L.Get(-n + 1).(lua.LString); ok {
				if clean := hideAddresses(L, string(msg)); clean != string(msg) {
					L.Replace(L.GetTop()-n+2, lua.LString(clean))
				}
			}
		}
		return n
	}
}

// luaToString is tostring(v): its __tostring metamethod's result when it
// has one, else objectName.
func luaToString(L *lua.LState, v lua.LValue) lua.LValue {
	if fn, ok := L.GetMetaField(v, "__tostring").(*lua.LFunction); ok {
		L.Push(fn)
		L.Push(v)
		L.Call(1, 1)
		r := L.Get(-1)
		L.Pop(1)
		return r
	}
	if s, ok := v.(lua.LString); ok {
		return s
	}
	return lua.LString(ObjectName(L, v))
}

// luaToText is what print, log and %s show for v: luaToString's result, or,
// when a __tostring returned something other than a string or number,
// that value's name (its own String would show a Go address).
func ToText(L *lua.LState, v lua.LValue) string {
	switch r := luaToString(L, v).(type) {
	case lua.LString:
		return string(r)
	case lua.LNumber:
		return r.String()
	default:
		return ObjectName(L, r)
	}
}

func luaToStringFn(L *lua.LState) int {
	L.Push(luaToString(L, L.CheckAny(1)))
	return 1
}

// luaStrByte is Lua 5.1's string.byte(s [, i [, j]]), refusing more than
// maxUnpack results as Lua 5.1 does ("string slice too long"); gopher-lua
// pushed up to its whole value stack (60,000 values took 28 ms).
func luaStrByte(L *lua.LState) int {
	s := L.CheckString(1)
	posrelat := func(pos int) int {
		if pos < 0 {
			return len(s) + pos + 1
		}
		return pos
	}
	i := posrelat(L.OptInt(2, 1))
	j := posrelat(L.OptInt(3, i))
	i, j = max(i, 1), min(j, len(s))
	if i > j {
		return 0
	}
	if j-i+1 > maxUnpack {
		L.RaiseError("string slice too long")
	}
	for k := i; k <= j; k++ {
		L.Push(lua.LNumber(s[k-1]))
	}
	return j - i + 1
}

// luaUnpack is Lua 5.1's unpack(t [, i [, j]]), refusing more than
// maxUnpack results as Lua 5.1 does.
func luaUnpack(L *lua.LState) int {
	t := L.CheckTable(1)
	i, j := L.OptInt(2, 1), optLast(L, 3, t)
	if i > j {
		return 0
	}
	n := j - i + 1
	if n <= 0 || n > maxUnpack {
		L.RaiseError("too many results to unpack")
	}
	for k := i; k <= j; k++ {
		L.Push(rawGetIndex(t, k))
	}
	return n
}

// openSafeBase replaces the base functions that print Go addresses or stop
// at the array part.
func openSafeBase(L *lua.LState, g *lua.LTable) {
	g.RawSetString("tostring", L.NewFunction(luaToStringFn))
	g.RawSetString("unpack", L.NewFunction(luaUnpack))
	for _, name := range []string{"pcall", "xpcall"} {
		if f, ok := g.RawGetString(name).(*lua.LFunction); ok && f.IsG {
			g.RawSetString(name, L.NewFunction(protectedCall(f.GFunction)))
		}
	}
}

// ErrorText is a Lua error's message without gopher-lua's stack traceback,
// cut to MaxErrorText bytes (Cut) before anything copies it: a script's
// error message may be many MiB.
func ErrorText(err error) string {
	var msg string
	if aerr, ok := err.(*lua.ApiError); ok {
		if s, ok := aerr.Object.(lua.LString); ok {
			msg = string(s)
		} else {
			msg = aerr.Object.String()
		}
	} else {
		msg = err.Error()
	}
	if i := strings.Index(msg[:min(len(msg), MaxErrorText+len("\nstack traceback:"))], "\nstack traceback:"); i >= 0 {
		msg = msg[:i]
	}
	return Cut(msg, MaxErrorText)
}

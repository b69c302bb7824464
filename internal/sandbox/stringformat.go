package sandbox

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unsafe"

	lua "github.com/luafw/luafw/lua"
)

// string.format and string.rep, written for the sandbox: every piece of a
// result is measured before it is built, so no call returns (or allocates)
// more than maxStringResult bytes, and long loops look at the call's
// budget. string.format follows Lua 5.1's str_format rather than Go's fmt,
// which gopher-lua used: only the conversions c d i o u x X e E f g G q s
// and %% exist ("%v", "%p", "%T" and the like, which printed Go values and
// addresses, are errors), and lengths count bytes, not UTF-8 runes.

// maxNumberPiece bounds what one numeric conversion produces: %.99f of
// 1e308 is 309 digits, a point and 99 decimals, and widths are at most 99.
const maxNumberPiece = 512

// formatSpec is one parsed conversion: "%" flags width . precision verb.
type formatSpec struct {
	flags     string
	width     int
	prec      int // -1: none
	verb      byte
	left      bool // '-'
	plus      bool // '+'
	space     bool // ' '
	alternate bool // '#'
	zero      bool // '0'
}

// parseFormatSpec reads the conversion starting after a '%' at f[i] and
// returns it and the index after it, raising Lua 5.1's errors.
func parseFormatSpec(L *lua.LState, f string, i int) (formatSpec, int) {
	sp := formatSpec{prec: -1}
	start := i
	for i < len(f) && strings.IndexByte("-+ #0", f[i]) >= 0 {
		switch f[i] {
		case '-':
			sp.left = true
		case '+':
			sp.plus = true
		case ' ':
			sp.space = true
		case '#':
			sp.alternate = true
		case '0':
			sp.zero = true
		}
		i++
	}
	if i-start >= 6 {
		L.RaiseError("invalid format (repeated flags)")
	}
	sp.flags = f[start:i]
	digits := func() int {
		n, d := 0, 0
		for i < len(f) && f[i] >= '0' && f[i] <= '9' {
			if d == 2 {
				L.RaiseError("invalid format (width or precision too long)")
			}
			n = n*10 + int(f[i]-'0')
			d++
			i++
		}
		return n
	}
	sp.width = digits()
	if i < len(f) && f[i] == '.' {
		i++
		sp.prec = digits()
	}
	if i >= len(f) {
		L.RaiseError("invalid option '%%' to 'format'")
	}
	sp.verb = f[i]
	return sp, i + 1
}

// pad pads s with spaces to the spec's width, on the left unless '-'.
func (sp formatSpec) pad(b *strings.Builder, s string) {
	n := sp.width - len(s)
	if !sp.left {
		for ; n > 0; n-- {
			b.WriteByte(' ')
		}
	}
	b.WriteString(s)
	for ; n > 0; n-- {
		b.WriteByte(' ')
	}
}

// goFormat is the Go fmt directive for a numeric conversion: Go's integer
// and float formatting agree with C's for these flags and verbs once Lua
// 5.1's casts are applied to the argument. Flags C ignores for unsigned
// conversions are dropped (Go would print them).
func (sp formatSpec) goFormat(verb byte, unsigned bool) string {
	var b strings.Builder
	b.WriteByte('%')
	for i := 0; i < len(sp.flags); i++ {
		if c := sp.flags[i]; !unsigned || (c != '+' && c != ' ') {
			b.WriteByte(c)
		}
	}
	if sp.width > 0 {
		b.WriteString(strconv.Itoa(sp.width))
	}
	if sp.prec >= 0 {
		b.WriteByte('.')
		b.WriteString(strconv.Itoa(sp.prec))
	}
	b.WriteByte(verb)
	return b.String()
}

// luaStrFormat is string.format(fmt, ...).
func luaStrFormat(L *lua.LState) int {
	f := L.CheckString(1)
	top := L.GetTop()
	arg := 1
	var b strings.Builder
	m := Meter(L)
	room := func(n int) {
		if b.Len()+n > maxStringResult {
			L.RaiseError("string.format: result exceeds the sandbox limit of %d bytes", maxStringResult)
		}
		m.Step(1 + n/64)
	}
	for i := 0; i < len(f); {
		j := strings.IndexByte(f[i:], '%')
		if j < 0 {
			j = len(f) - i
		}
		room(j)
		b.WriteString(f[i : i+j])
		i += j
		if i >= len(f) {
			break
		}
		i++ // the '%'
		if i < len(f) && f[i] == '%' {
			room(1)
			b.WriteByte('%')
			i++
			continue
		}
		arg++
		if arg > top {
			L.ArgError(arg, "no value")
		}
		var sp formatSpec
		sp, i = parseFormatSpec(L, f, i)
		formatOne(L, &b, sp, arg, room)
	}
	L.Push(lua.LString(b.String()))
	return 1
}

// formatOne appends argument arg converted by sp; room(n) is called with
// an upper bound of the bytes it appends before it appends them.
func formatOne(L *lua.LState, b *strings.Builder, sp formatSpec, arg int, room func(int)) {
	switch sp.verb {
	case 'c':
		room(max(sp.width, 1))
		sp.pad(b, string([]byte{byte(int64(L.CheckNumber(arg)))}))
	case 'd', 'i':
		room(maxNumberPiece)
		b.WriteString(fmt.Sprintf(sp.goFormat('d', false), int64(checkFloat(L, arg))))
	case 'o', 'u', 'x', 'X':
		verb := sp.verb
		if verb == 'u' {
			verb = 'd'
		}
		room(maxNumberPiece)
		b.WriteString(fmt.Sprintf(sp.goFormat(verb, true), uint64(int64(checkFloat(L, arg)))))
	case 'e', 'E', 'f', 'g', 'G':
		room(maxNumberPiece)
		formatFloat(b, sp, checkFloat(L, arg))
	case 'q':
		s := L.CheckString(arg)
		room(quotedLen(s))
		addQuoted(b, s)
	case 's':
		s := formatArgString(L, arg)
		if sp.prec >= 0 && len(s) > sp.prec {
			s = s[:sp.prec]
		}
		room(max(len(s), sp.width))
		sp.pad(b, s)
	default:
		L.RaiseError("invalid option '%%%c' to 'format'", sp.verb)
	}
}

// checkFloat is luaL_checknumber: a number, or a string that reads as one.
func checkFloat(L *lua.LState, arg int) float64 {
	return float64(L.CheckNumber(arg))
}

// formatArgString is what %s prints: strings and numbers as gopher-lua's
// `..` does, other values through the sandbox's tostring.
func formatArgString(L *lua.LState, arg int) string {
	switch v := L.CheckAny(arg).(type) {
	case lua.LString:
		return string(v)
	case lua.LNumber:
		return v.String()
	default:
		return ToText(L, v)
	}
}

// formatFloat writes a float conversion. C's %g has a default precision of
// 6 where Go's means "shortest", and C prints inf and nan where Go prints
// +Inf and NaN.
func formatFloat(b *strings.Builder, sp formatSpec, x float64) {
	if math.IsInf(x, 0) || math.IsNaN(x) {
		s := "inf"
		if math.IsNaN(x) {
			s = "nan"
		}
		if sp.verb == 'E' || sp.verb == 'G' {
			s = strings.ToUpper(s)
		}
		switch {
		case math.Signbit(x):
			s = "-" + s
		case sp.plus:
			s = "+" + s
		case sp.space:
			s = " " + s
		}
		sp.pad(b, s)
		return
	}
	if sp.prec < 0 {
		sp.prec = 6
	}
	b.WriteString(fmt.Sprintf(sp.goFormat(sp.verb, false), x))
}

// quotedLen is the length of s after addQuoted.
func quotedLen(s string) int {
	n := 2 + len(s)
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"', '\\', '\n':
			n++
		case '\r':
			n++
		case 0:
			n += 3
		}
	}
	return n
}

// addQuoted is Lua 5.1's %q: the string between double quotes, with ",
// \ and newline escaped by a backslash, \r as "\r" and NUL as "\000".
func addQuoted(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\', '\n':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\r':
			b.WriteString(`\r`)
		case 0:
			b.WriteString(`\000`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
}

// luaStrRep is string.rep(s, n [, sep]): the size is checked before
// anything is built (an empty result is returned without looping), and the
// budget while building.
func luaStrRep(L *lua.LState) int {
	s := L.CheckString(1)
	n := L.CheckInt(2)
	sep := L.OptString(3, "")
	if n <= 0 || len(s)+len(sep) == 0 {
		L.Push(lua.LString(""))
		return 1
	}
	if n-1 > maxStringResult || int64(len(s))*int64(n)+int64(len(sep))*int64(n-1) > maxStringResult {
		L.RaiseError("string.rep: result of %d x %d bytes exceeds the sandbox limit of %d bytes", n, len(s)+len(sep), maxStringResult)
	}
	// s, then (sep s) n-1 times, filled by doubling copies: a few
	// memmoves instead of n small writes.
	buf := make([]byte, len(s)*n+len(sep)*(n-1))
	copy(buf, s)
	rest := buf[len(s):]
	if len(rest) > 0 {
		m := Meter(L)
		filled := copy(rest, sep)
		filled += copy(rest[filled:], s)
		for filled < len(rest) {
			m.Step(1 + filled/64)
			filled += copy(rest[filled:], rest[:filled])
		}
	}
	L.Push(lua.LString(unsafe.String(unsafe.SliceData(buf), len(buf)))) // buf is not written again
	return 1
}

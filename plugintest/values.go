package plugintest

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	lua "github.com/luafw/luafw/lua"

	"github.com/luafw/luafw/internal/sandbox"
)

// maxCompareDepth bounds how deep expect_eq follows nested tables: a chain
// of a million tables would otherwise recurse a million Go frames.
const maxCompareDepth = 100

// maxFormatLen bounds the text formatValue builds for one value.
const maxFormatLen = 4 << 10

// maxFormatKeys bounds the keys of one table formatValue sorts.
const maxFormatKeys = 1000

// deepEqual compares two Lua values, tables by content. When they differ,
// path names where (".tags[2]"), and got/want are the values there. It
// looks at the test's budget as it walks (a Lua error when the test was
// cut off) and raises an error for tables nested deeper than
// maxCompareDepth.
func deepEqual(L *lua.LState, a, b lua.LValue) (equal bool, path string, got, want lua.LValue) {
	type pair struct{ a, b *lua.LTable }
	seen := map[pair]bool{}
	meter := sandbox.Meter(L)
	var walk func(a, b lua.LValue, path string, depth int) (bool, string, lua.LValue, lua.LValue)
	walk = func(a, b lua.LValue, path string, depth int) (bool, string, lua.LValue, lua.LValue) {
		meter.Step(1)
		ta, okA := a.(*lua.LTable)
		tb, okB := b.(*lua.LTable)
		if !okA || !okB {
			return equalScalar(a, b), path, a, b
		}
		if ta == tb || seen[pair{ta, tb}] {
			return true, "", nil, nil
		}
		if depth >= maxCompareDepth {
			L.RaiseError("expect_eq: tables nested deeper than %d levels", maxCompareDepth)
		}
		seen[pair{ta, tb}] = true
		var diff struct {
			found      bool
			path       string
			got, want  lua.LValue
			sortingKey string
		}
		check := func(k lua.LValue) {
			ok, p, g, w := walk(ta.RawGet(k), tb.RawGet(k), path+keyPath(L, k), depth+1)
			if !ok {
				// report the first difference in a stable key order
				sk := sortKey(k)
				if !diff.found || sk < diff.sortingKey {
					diff.found, diff.path, diff.got, diff.want, diff.sortingKey = true, p, g, w, sk
				}
			}
		}
		ta.ForEach(func(k, _ lua.LValue) { check(k) })
		tb.ForEach(func(k, v lua.LValue) {
			if ta.RawGet(k) == lua.LNil {
				check(k)
			}
		})
		if diff.found {
			return false, diff.path, diff.got, diff.want
		}
		return true, "", nil, nil
	}
	return walk(a, b, "", 0)
}

func equalScalar(a, b lua.LValue) bool {
	if a.Type() != b.Type() {
		return false
	}
	switch x := a.(type) {
	case lua.LNumber:
		return x == b.(lua.LNumber)
	case lua.LString:
		return x == b.(lua.LString)
	case lua.LBool:
		return x == b.(lua.LBool)
	case *lua.LNilType:
		return true
	}
	return a == b
}

// sortKey orders table keys: array indexes first, by number, then the rest
// by their text.
func sortKey(k lua.LValue) string {
	if n, ok := k.(lua.LNumber); ok {
		return fmt.Sprintf("0%020.6f", float64(n))
	}
	return "1" + k.String()
}

func keyPath(L *lua.LState, k lua.LValue) string {
	if s, ok := k.(lua.LString); ok && isIdent(string(s)) {
		return "." + string(s)
	}
	return "[" + formatValue(L, k) + "]"
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if r != '_' && !(r >= 'a' && r <= 'z') && !(r >= 'A' && r <= 'Z') && !(i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// formatValue renders a value for failure messages: strings quoted, tables
// as constructors with their array part first and keys sorted; functions
// and other objects by the opaque names tostring shows (never a Go
// address). The text is cut at maxFormatLen bytes.
func formatValue(L *lua.LState, v lua.LValue) string {
	var b strings.Builder
	writeValue(L, &b, v, 0, map[*lua.LTable]bool{})
	if b.Len() > maxFormatLen {
		return b.String()[:maxFormatLen] + "...(cut)"
	}
	return b.String()
}

const maxFormatDepth = 5

func writeValue(L *lua.LState, b *strings.Builder, v lua.LValue, depth int, seen map[*lua.LTable]bool) {
	if b.Len() > maxFormatLen {
		return
	}
	switch x := v.(type) {
	case lua.LString:
		b.WriteString(strconv.Quote(string(x)))
	case lua.LNumber:
		b.WriteString(formatNumber(float64(x)))
	case *lua.LTable:
		if seen[x] || depth >= maxFormatDepth {
			b.WriteString("{...}")
			return
		}
		seen[x] = true
		defer delete(seen, x)
		b.WriteString("{")
		n := x.Len()
		for i := 1; i <= n && b.Len() <= maxFormatLen; i++ {
			if i > 1 {
				b.WriteString(", ")
			}
			writeValue(L, b, x.RawGetInt(i), depth+1, seen)
		}
		var keys []lua.LValue
		if b.Len() <= maxFormatLen {
			// At most maxFormatKeys keys are sorted and shown: the text
			// is cut long before that anyway.
			x.ForEach(func(k, _ lua.LValue) {
				if kn, ok := k.(lua.LNumber); ok && float64(kn) == math.Trunc(float64(kn)) && kn >= 1 && int(kn) <= n {
					return
				}
				if len(keys) < maxFormatKeys {
					keys = append(keys, k)
				}
			})
		}
		sort.Slice(keys, func(i, j int) bool { return sortKey(keys[i]) < sortKey(keys[j]) })
		for i, k := range keys {
			if b.Len() > maxFormatLen {
				break
			}
			if i > 0 || n > 0 {
				b.WriteString(", ")
			}
			if s, ok := k.(lua.LString); ok && isIdent(string(s)) {
				b.WriteString(string(s))
			} else {
				b.WriteString("[")
				writeValue(L, b, k, depth+1, seen)
				b.WriteString("]")
			}
			b.WriteString(" = ")
			writeValue(L, b, x.RawGet(k), depth+1, seen)
		}
		b.WriteString("}")
	case *lua.LUserData:
		if p, ok := x.Value.(*testPacket); ok {
			b.WriteString(p.String())
			return
		}
		b.WriteString(sandbox.ObjectName(L, v))
	default:
		b.WriteString(sandbox.ObjectName(L, v))
	}
}

func formatNumber(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return strconv.FormatInt(int64(f), 10)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// luaToGo converts a test's options table to what a configuration file
// would give the engine: numbers, strings, booleans, lists and maps.
func luaToGo(v lua.LValue) (any, error) {
	return toGo(v, 0)
}

func toGo(v lua.LValue, depth int) (any, error) {
	if depth > 32 {
		return nil, fmt.Errorf("options nest too deep (a table that contains itself?)")
	}
	switch x := v.(type) {
	case *lua.LNilType:
		return nil, nil
	case lua.LBool:
		return bool(x), nil
	case lua.LNumber:
		f := float64(x)
		if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			return int(f), nil
		}
		return f, nil
	case lua.LString:
		return string(x), nil
	case *lua.LTable:
		n := x.Len()
		count := 0
		x.ForEach(func(_, _ lua.LValue) { count++ })
		if n > 0 && count == n {
			list := make([]any, 0, n)
			for i := 1; i <= n; i++ {
				e, err := toGo(x.RawGetInt(i), depth+1)
				if err != nil {
					return nil, err
				}
				list = append(list, e)
			}
			return list, nil
		}
		m := map[string]any{}
		var err error
		x.ForEach(func(k, e lua.LValue) {
			if err != nil {
				return
			}
			ks, ok := k.(lua.LString)
			if !ok {
				err = fmt.Errorf("option keys must be strings, not %s", k.Type())
				return
			}
			m[string(ks)], err = toGo(e, depth+1)
		})
		return m, err
	}
	return nil, fmt.Errorf("options can hold numbers, strings, booleans and tables, not %s", v.Type())
}

package sandbox

import (
	"sort"
	"strings"

	lua "github.com/luafw/luafw/lua"
)

// The table library, rewritten so that one call is bounded: it walks with a
// budgetMeter, refuses results over maxStringResult before building them,
// and follows Lua 5.1's definitions (positions, borders, errors).
//
// Why a list may continue past the array part: gopher-lua keeps integer
// keys 1..MaxArrayIndex-1 in a Go slice and pads it with nils up to a
// key that is set, so `t[n] = 1` on an empty table allocates and fills n
// slots in one instruction, which no budget can interrupt. MaxArrayIndex
// lowers that bound; keys beyond it live in the hash part, where reads,
// writes, pairs and next behave as Lua says. Only the `#` operator (which
// is gopher-lua's, looking at the array part alone) stops at
// MaxArrayIndex-1; the functions here (table.insert, table.getn, unpack,
// ipairs, table.concat, table.sort, table.remove) find the true border.

// MaxArrayIndex bounds the array part of every table a sandboxed state makes
// (lua.Options.MaxArrayIndex, patch 4 of package lua: the bound belongs to
// the state, so an embedding program's own gopher-lua states keep theirs). The worst single
// instruction is t[MaxArrayIndex-1] = 1 on an empty table, which fills a
// slice of that many slots (gopher-lua appends them one at a time, making
// about five times the slice in garbage). Measured on a busy 2-core
// machine, one such instruction after a GC (median of 25) / back to back
// in a loop, where the collector's work is charged to it (average of 50):
//
//	1<<13: -       / 1.0 ms
//	1<<14: 0.25 ms / 2.4 ms
//	1<<15: 0.48 ms / 4.7-7 ms
//	1<<16: 4 ms    / 11-20 ms   <- chosen
//	1<<17: -       / 26 ms
//	1<<26 (gopher-lua's own bound): 7.5 s and 1 GiB
//
// `#t` on such a padded table scans it: 0.2 ms at 1<<15. The price of a
// low bound: integer keys above it cost a hash entry each (about 1-2 µs
// and ~100 bytes to insert, against ~10 ns and 16 bytes in the array
// part), and `#` does not see them, so `t[#t+1] = v` stops growing a list
// there. 1<<16 keeps lists of 65535 elements whole for `#`: a list that
// long is ordinary in a plugin (a table of names read at load), and the
// sandbox must not change what ordinary code computes; the price is a
// worst instruction of a few ms on an idle machine (the figures above were
// taken at load 15-20), which the documented budget slack covers.
const MaxArrayIndex = 1 << 16

// rawGetIndex is t[i] without metamethods, for any integer i.
func rawGetIndex(t *lua.LTable, i int) lua.LValue {
	if v := t.RawGetInt(i); v != lua.LNil {
		return v
	}
	if i < 1 || i >= t.MaxArrayIndex() {
		return t.RawGet(lua.LNumber(i))
	}
	return lua.LNil
}

// tableLen is a border of t (Lua 5.1's luaL_getn): gopher-lua's array
// border, continued into the hash part when the list goes on there, by
// doubling and then bisecting as Lua's unbound_search does.
func tableLen(L *lua.LState, t *lua.LTable) int {
	n := t.Len()
	if rawGetIndex(t, n+1) == lua.LNil {
		return n
	}
	m := Meter(L)
	i, j := n+1, (n+1)*2
	for rawGetIndex(t, j) != lua.LNil {
		m.Step(1)
		i = j
		if j > int(^uint(0)>>2) {
			// A table crafted to defeat the doubling: walk linearly.
			for k := n + 1; ; k++ {
				m.Step(1)
				if rawGetIndex(t, k+1) == lua.LNil {
					return k
				}
			}
		}
		j *= 2
	}
	for j-i > 1 {
		mid := i + (j-i)/2
		if rawGetIndex(t, mid) == lua.LNil {
			j = mid
		} else {
			i = mid
		}
	}
	return i
}

// checkWritable is argument 1 of a function that writes to it raw, which
// must not be one of the read-only builtin tables (as for rawset).
func checkWritable(L *lua.LState) *lua.LTable {
	t := L.CheckTable(1)
	if isLocked(t) {
		L.RaiseError("table is read-only")
	}
	return t
}

// optLast reads argument n, the last index of a range over t, which
// defaults to t's border.
func optLast(L *lua.LState, n int, t *lua.LTable) int {
	if L.Get(n) == lua.LNil {
		return tableLen(L, t)
	}
	return L.CheckInt(n)
}

// tableConcat is table.concat(t [, sep [, i [, j]]]).
func tableConcat(L *lua.LState) int {
	t := L.CheckTable(1)
	sep := L.OptString(2, "")
	i, j := L.OptInt(3, 1), optLast(L, 4, t)
	var b strings.Builder
	m := Meter(L)
	for k := i; k <= j; k++ {
		var s string
		switch v := rawGetIndex(t, k).(type) {
		case lua.LString:
			s = string(v)
		case lua.LNumber:
			s = v.String()
		default:
			L.RaiseError("invalid value (at index %d) in table for 'concat'", k)
		}
		n := len(s)
		if k != j {
			n += len(sep)
		}
		if b.Len()+n > maxStringResult {
			L.RaiseError("table.concat: result exceeds the sandbox limit of %d bytes", maxStringResult)
		}
		m.Step(1 + n/64)
		b.WriteString(s)
		if k != j {
			b.WriteString(sep)
		}
		if k == j {
			break // j may be the largest int
		}
	}
	L.Push(lua.LString(b.String()))
	return 1
}

// tableInsert is table.insert(t, [pos,] v): Lua 5.1 moves t[pos..n] up one.
func tableInsert(L *lua.LState) int {
	t := checkWritable(L)
	e := tableLen(L, t) + 1
	var pos int
	switch L.GetTop() {
	case 2:
		pos = e
	case 3:
		pos = L.CheckInt(2)
		if pos > e {
			e = pos
		}
		m := Meter(L)
		for i := e; i > pos; i-- {
			m.Step(1)
			t.RawSetInt(i, rawGetIndex(t, i-1))
		}
	default:
		L.RaiseError("wrong number of arguments to 'insert'")
	}
	t.RawSetInt(pos, L.Get(L.GetTop()))
	return 0
}

// tableRemove is table.remove(t [, pos]).
func tableRemove(L *lua.LState) int {
	t := checkWritable(L)
	e := tableLen(L, t)
	pos := L.OptInt(2, e)
	if e == 0 || pos < 1 || pos > e {
		return 0
	}
	if e == t.Len() {
		// The list lies in the array part: gopher-lua's Remove shifts it
		// with one copy and shrinks the slice, so that popping a long
		// list leaves no trail of nils for the next border search to
		// walk.
		L.Push(t.Remove(pos))
		return 1
	}
	L.Push(rawGetIndex(t, pos))
	m := Meter(L)
	for ; pos < e; pos++ {
		m.Step(1)
		t.RawSetInt(pos, rawGetIndex(t, pos+1))
	}
	t.RawSetInt(e, lua.LNil)
	return 1
}

// tableMaxN is table.maxn(t): the largest positive numeric key.
func tableMaxN(L *lua.LState) int {
	t := L.CheckTable(1)
	m := Meter(L)
	max := lua.LNumber(0)
	t.ForEach(func(k, _ lua.LValue) {
		m.Step(1)
		if n, ok := k.(lua.LNumber); ok && n > max {
			max = n
		}
	})
	L.Push(max)
	return 1
}

func tableGetN(L *lua.LState) int {
	L.Push(lua.LNumber(tableLen(L, L.CheckTable(1))))
	return 1
}

// tableSort is table.sort(t [, comp]) over t[1..n], with the budget checked
// every checkEvery comparisons (a comparator's own instructions are checked
// by the VM).
//
// When the list lies in the array part (n <= t.Len(), so n < MaxArrayIndex)
// it sorts a copy and writes it back, so an error leaves t as it was; the
// copy is no larger than the array part t already has. Otherwise the border
// reaches into the hash part, where a script sets it with one key (t[2^40]
// after a doubling chain of keys, say): n says nothing about what t holds,
// and a copy of n values was a fatal out-of-memory error from one packet.
// Then it sorts t in place, reading and writing t itself as Lua 5.1's
// auxsort does, and allocates nothing whatever n is; time is the budget's.
func tableSort(L *lua.LState) int {
	t := checkWritable(L)
	s := &luaSorter{L: L, m: Meter(L)}
	if L.GetTop() >= 2 && L.Get(2) != lua.LNil {
		s.fn = L.CheckFunction(2)
	}
	n := tableLen(L, t)
	if n > t.Len() {
		sort.Sort(&tableSorter{luaSorter: s, t: t, n: n})
		return 0
	}
	s.v = make([]lua.LValue, n)
	for i := range s.v {
		s.m.Step(1)
		s.v[i] = rawGetIndex(t, i+1)
	}
	sort.Sort(s)
	// The write-back is all or nothing: charged before it begins, then not
	// cut, so a sort cut off leaves the table as it was. (A cut in it left
	// a sorted prefix, and the next sort of the nearly sorted table fit in
	// the budget: a hostile packet made the next one cheap.) It is no
	// longer than the copy made above.
	s.m.Step(n)
	for i, v := range s.v {
		t.RawSetInt(i+1, v)
	}
	return 0
}

// tableSorter sorts t[1..n] in place (see tableSort).
type tableSorter struct {
	*luaSorter
	t *lua.LTable
	n int
}

func (s *tableSorter) Len() int { return s.n }

func (s *tableSorter) Swap(i, j int) {
	s.m.Step(1)
	a, b := rawGetIndex(s.t, i+1), rawGetIndex(s.t, j+1)
	s.t.RawSetInt(i+1, b)
	s.t.RawSetInt(j+1, a)
}

func (s *tableSorter) Less(i, j int) bool {
	return s.less(rawGetIndex(s.t, i+1), rawGetIndex(s.t, j+1))
}

type luaSorter struct {
	L  *lua.LState
	m  BudgetMeter
	fn *lua.LFunction
	v  []lua.LValue
}

func (s *luaSorter) Len() int      { return len(s.v) }
func (s *luaSorter) Swap(i, j int) { s.v[i], s.v[j] = s.v[j], s.v[i] }

func (s *luaSorter) Less(i, j int) bool { return s.less(s.v[i], s.v[j]) }

// less is the sort's order: the comparator, or Lua's <.
func (s *luaSorter) less(a, b lua.LValue) bool {
	s.m.Step(1)
	if s.fn != nil {
		s.L.Push(s.fn)
		s.L.Push(a)
		s.L.Push(b)
		s.L.Call(2, 1)
		r := s.L.Get(-1)
		s.L.Pop(1)
		return lua.LVAsBool(r)
	}
	switch x := a.(type) {
	case lua.LNumber:
		if y, ok := b.(lua.LNumber); ok {
			return x < y
		}
	case lua.LString:
		if y, ok := b.(lua.LString); ok {
			return x < y
		}
	}
	return s.L.LessThan(a, b)
}

// openSafeTable replaces the table library's functions in tbl.
func openSafeTable(L *lua.LState, tbl *lua.LTable) {
	for name, fn := range map[string]lua.LGFunction{
		"concat": tableConcat,
		"insert": tableInsert,
		"remove": tableRemove,
		"maxn":   tableMaxN,
		"getn":   tableGetN,
		"sort":   tableSort,
	} {
		tbl.RawSetString(name, L.NewFunction(fn))
	}
}

package host

import (
	lua "github.com/yuin/gopher-lua"
)

// pkt.ct: the packet's connection (conntrack) state and mark, and the
// updates a script asks for (applied with the verdict).

// ctIndex is pkt.ct's __index.
func ctIndex(L *lua.LState) int {
	v := viewOf(L)
	key := viewKey(L, "pkt.ct")
	switch key {
	case "state":
		s := v.ctx.pkt.CTState
		if s == CTUnknown {
			L.Push(lua.LNil)
		} else {
			L.Push(v.vals.states[s])
		}
	case "mark":
		m, ok := v.ctx.CTMark()
		if !ok {
			L.Push(lua.LNil)
		} else {
			L.Push(v.vals.num(m))
		}
	case "set_mark":
		L.Push(v.ctSetMark)
	case "set_timeout":
		L.Push(v.ctSetTimeout)
	case "set_label":
		L.Push(v.ctSetLabel)
	default:
		L.RaiseError("pkt.ct has no field %q (want state, mark, set_mark, set_timeout, set_label)", key)
	}
	return 1
}

// ctSetMark is pkt.ct:set_mark(value [, mask]).
func ctSetMark(L *lua.LState) int {
	viewOf(L).ctx.CTSetMark(checkMark(L))
	return 0
}

// ctSetTimeout is pkt.ct:set_timeout(seconds).
func ctSetTimeout(L *lua.LState) int {
	viewOf(L).ctx.CTSetTimeout(checkU32(L, 2))
	return 0
}

// ctSetLabel is pkt.ct:set_label(bit), bit 0..127.
func ctSetLabel(L *lua.LState) int {
	bit := L.CheckInt(2)
	if bit < 0 || !viewOf(L).ctx.CTSetLabel(uint(bit)) {
		L.ArgError(2, "label bit must be 0..127")
	}
	return 0
}

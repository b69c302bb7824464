package engine

import (
	lua "github.com/luafw/luafw/lua"
)

// pkt.ct: the packet's connection (conntrack) state and mark, and the
// updates a script asks for (applied with the verdict).

// ctField is a field or method of pkt.ct by name.
func (v *pktView) ctField(L *lua.LState, key string) lua.LValue {
	switch key {
	case "state":
		if s := v.ctx.pkt.CTState; s != CTUnknown {
			return v.vals.states[s]
		}
		return lua.LNil
	case "mark":
		if m, ok := v.ctx.CTMark(); ok {
			return v.vals.num(m)
		}
		return lua.LNil
	case "set_mark":
		return v.ctSetMark
	case "set_timeout":
		return v.ctSetTimeout
	case "set_label":
		return v.ctSetLabel
	}
	L.RaiseError("%s (want state, mark, set_mark, set_timeout, set_label)", noSuchField("pkt.ct", key))
	return nil
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

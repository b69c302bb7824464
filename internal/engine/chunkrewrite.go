package engine

import lua "github.com/luafw/luafw/lua"

// boxedKeys rewrites a compiled chunk so that field reads with a constant
// name (pkt.dport) use OP_GETTABLE instead of OP_GETTABLEKS. Both read
// R(B)[RK(C)] with the same semantics and errors; gopher-lua implements the
// KS form by unboxing the constant to a Go string and boxing it again (a
// 16-byte allocation) whenever the read reaches an __index function (a
// script's own metatables: luafw's views answer through LUserData.Index
// and its proxies have __index tables), while OP_GETTABLE hands the
// constant, boxed once at compile time, to the function. Reads of plain
// tables cost the same either way.
func boxedKeys(p *lua.FunctionProto) {
	const opShift, operands = 26, 1<<26 - 1
	for i, inst := range p.Code {
		if int(inst>>opShift) == lua.OP_GETTABLEKS {
			p.Code[i] = inst&operands | uint32(lua.OP_GETTABLE)<<opShift
		}
	}
	for _, sub := range p.FunctionPrototypes {
		boxedKeys(sub)
	}
}

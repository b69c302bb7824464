package engine

import (
	"slices"

	lua "github.com/luafw/luafw/lua"
)

// Tags across diversions. Within one diversion tags live in the Ctx; on
// the kernel path a packet leaves luafw between diversions (another hook,
// or a netfilter stage between two segments), so the tags that must cross
// ride in mark bits the daemon reserves (marks.tags). Which tags: those
// whose name a plugin writes as a string literal both in a pkt:tag call
// and in a pkt:tagged call (any plugin, any callback): found in the
// compiled code at load, so `luafw check` can list them. A tag whose name
// is computed at run time (pkt:tag(name)) does not cross.

// tagLiterals returns the names of the string literals passed to
// :tag(...) and :tagged(...) in p and its nested functions: a SELF of the
// constant method name followed by a LOADK of the argument into the slot
// after the receiver (how the compiler emits `pkt:tag("dns")`).
func tagLiterals(p *lua.FunctionProto) (set, tested []string) {
	const opShift = 26
	rk := func(v int) (lua.LValue, bool) {
		if v&0x100 == 0 || v&0xff >= len(p.Constants) {
			return nil, false
		}
		return p.Constants[v&0xff], true
	}
	for i := 0; i+1 < len(p.Code); i++ {
		inst := p.Code[i]
		if int(inst>>opShift) != lua.OP_SELF {
			continue
		}
		method, ok := rk(int(inst>>9) & 0x1ff)
		if !ok || (method != lua.LString("tag") && method != lua.LString("tagged")) {
			continue
		}
		next := p.Code[i+1]
		a := int(inst>>18) & 0xff
		if int(next>>opShift) != lua.OP_LOADK || int(next>>18)&0xff != a+2 {
			continue
		}
		bx := int(next & 0x3ffff)
		if bx >= len(p.Constants) {
			continue
		}
		name, ok := p.Constants[bx].(lua.LString)
		if !ok || name == "" || len(name) > MaxNameLen {
			continue
		}
		if method == lua.LString("tag") {
			set = appendNew(set, string(name))
		} else {
			tested = appendNew(tested, string(name))
		}
	}
	for _, sub := range p.FunctionPrototypes {
		s, t := tagLiterals(sub)
		for _, n := range s {
			set = appendNew(set, n)
		}
		for _, n := range t {
			tested = appendNew(tested, n)
		}
	}
	return set, tested
}

func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// CrossingTags returns the tags that must cross diversions on the kernel
// path: set (a literal in pkt:tag) by some plugin and tested (a literal
// in pkt:tagged) by some plugin of the running set, in the order the
// plugins set them (load order, then code order).
func (e *Engine) CrossingTags() []string { return crossingTags(e.gen.Load().plugins) }

func crossingTags(plugins []*plugin) []string {
	var tested []string
	for _, p := range plugins {
		for _, n := range p.tagsTested {
			tested = appendNew(tested, n)
		}
	}
	var out []string
	for _, p := range plugins {
		for _, n := range p.tagsSet {
			if slices.Contains(tested, n) {
				out = appendNew(out, n)
			}
		}
	}
	return out
}

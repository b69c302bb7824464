package engine

import (
	"slices"

	lua "github.com/luafw/luafw/lua"
)

// Tags across diversions. Within one diversion tags live in the Ctx; on
// the kernel path a packet leaves luafw between diversions (another hook,
// or a netfilter stage between two segments), so the tags that must cross
// ride in mark bits the daemon reserves (marks.tags). Which tags: those a
// plugin tests by a literal name (pkt:tagged("voip")) and that some plugin
// may set: by the same literal (pkt:tag("voip")), or by a computed name
// (pkt:tag(rule.name), a classifier's). They are found in the compiled
// code at load, so `luafw check` can list them. A tag tested only by a
// computed name (pkt:tagged(name)) does not cross.

// tagLiterals returns the names of the string literals passed to
// :tag(...) and :tagged(...) in p and its nested functions: a SELF of the
// constant method name followed by a LOADK of the argument into the slot
// after the receiver (how the compiler emits `pkt:tag("dns")`); computed
// says some :tag call takes another argument.
func tagLiterals(p *lua.FunctionProto) (set, tested []string, computed bool) {
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
		var name lua.LString
		if int(next>>opShift) == lua.OP_LOADK && int(next>>18)&0xff == a+2 {
			if bx := int(next & 0x3ffff); bx < len(p.Constants) {
				name, _ = p.Constants[bx].(lua.LString)
			}
		}
		if name == "" || len(name) > MaxNameLen {
			computed = computed || method == lua.LString("tag")
			continue
		}
		if method == lua.LString("tag") {
			set = appendNew(set, string(name))
		} else {
			tested = appendNew(tested, string(name))
		}
	}
	for _, sub := range p.FunctionPrototypes {
		s, t, c := tagLiterals(sub)
		computed = computed || c
		for _, n := range s {
			set = appendNew(set, n)
		}
		for _, n := range t {
			tested = appendNew(tested, n)
		}
	}
	return set, tested, computed
}

func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// CrossingTags returns the tags that must cross diversions on the kernel
// path: tested by a literal name (pkt:tagged) in some plugin of the
// running set, and set by a literal (pkt:tag) or, when some plugin sets
// tags by computed names, possibly set; in the order they are tested
// (load order, then code order).
func (e *Engine) CrossingTags() []string { return crossingTags(e.gen.Load().plugins) }

func crossingTags(plugins []*plugin) []string {
	var set []string
	computed := false
	for _, p := range plugins {
		set = append(set, p.tagsSet...)
		computed = computed || p.tagsComputed
	}
	var out []string
	for _, p := range plugins {
		for _, n := range p.tagsTested {
			if computed || slices.Contains(set, n) {
				out = appendNew(out, n)
			}
		}
	}
	return out
}

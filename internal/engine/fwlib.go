package engine

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/luafw/luafw/internal/sandbox"

	lua "github.com/luafw/luafw/lua"
)

// The fw module: registration, verdicts, priorities, hooks and the
// plugin's options.

var fwFuncs = map[string]lua.LGFunction{
	"option":   fwOption,
	"schema":   fwSchema, // options.go
	"list":     fwList,
	"keys":     fwKeys,
	"register": fwRegister,
	"send":     fwSend,  // packetlib.go
	"every":    fwEvery, // timers.go
	"after":    fwAfter, // timers.go
}

// openFw builds the fw table of ps.
func openFw(ps *pluginState) *lua.LTable {
	L := ps.L
	fw := L.SetFuncs(L.NewTable(), fwFuncs, ps.self)
	fw.RawSetString("ACCEPT", lua.LNumber(luaAccept))
	fw.RawSetString("DROP", lua.LNumber(luaDrop))
	fw.RawSetString("STOP", lua.LNumber(luaStop))
	fw.RawSetString("REJECT", lua.LNumber(luaReject))
	fw.RawSetString("REPEAT", lua.LNumber(luaRepeat))
	prio := L.NewTable()
	for name, v := range PriorityNames() {
		prio.RawSetString(name, lua.LNumber(v))
	}
	// Read-only like fw itself; pairs, ipairs and # work on them (see
	// internal/sandbox/readonly.go).
	fw.RawSetString("priority", sandbox.ReadOnly(L, prio, "fw.priority"))
	hooks := L.NewTable()
	for _, h := range Hooks() {
		hooks.Append(lua.LString(h.String()))
	}
	fw.RawSetString("hooks", sandbox.ReadOnly(L, hooks, "fw.hooks"))
	fw.RawSetString("plugin", lua.LString(ps.p.name()))
	ps.options = L.NewTable()
	for k, v := range ps.p.spec.Options {
		ps.options.RawSetString(k, sandbox.GoToLua(L, v))
	}
	fw.RawSetString("options", ps.options)
	return fw
}

// fwOption is fw.option(name, default [, types]): an option's value, or
// default when it is not set; types ("number", "string|table", ...) makes a
// value of another type a load error naming the plugin and option.
func fwOption(L *lua.LState) int {
	ps := stateOf(L)
	name := L.CheckString(1)
	v := ps.options.RawGetString(name)
	if v == lua.LNil {
		L.Push(L.Get(2))
		return 1
	}
	if L.GetTop() >= 3 {
		types := L.CheckString(3)
		if !strings.Contains(types, v.Type().String()) {
			L.RaiseError("%s: option %s must be a %s, not a %s", ps.p.name(), name, types, v.Type())
		}
	}
	L.Push(v)
	return 1
}

// fwList is fw.list(v): v when it is a table, else a list of v ({} for
// nil), so an option may be given as one value or a list.
func fwList(L *lua.LState) int {
	switch v := L.Get(1).(type) {
	case *lua.LTable:
		L.Push(v)
	case *lua.LNilType:
		L.Push(L.NewTable())
	default:
		t := L.NewTable()
		t.Append(v)
		L.Push(t)
	}
	return 1
}

// fwKeys is fw.keys(t): t's keys as a sorted list (numbers first, in
// order, then strings), e.g. a set of ports turned into a match's list. It
// is load-time work (sorting a big table would spend a callback's budget),
// so like fw.register it is refused inside callbacks.
func fwKeys(L *lua.LState) int {
	if !stateOf(L).loading {
		L.RaiseError("fw.keys can only be called while the plugin loads (at its top level)")
	}
	t := L.CheckTable(1)
	var nums []float64
	var strs []string
	m := sandbox.Meter(L)
	for k, _ := t.Next(lua.LNil); k != lua.LNil; k, _ = t.Next(k) {
		m.Step(1)
		switch x := k.(type) {
		case lua.LNumber:
			nums = append(nums, float64(x))
		case lua.LString:
			strs = append(strs, string(x))
		default:
			L.ArgError(1, fmt.Sprintf("keys must be numbers or strings, not %s", k.Type()))
		}
	}
	slices.Sort(nums)
	slices.Sort(strs)
	out := L.CreateTable(len(nums)+len(strs), 0)
	for i, n := range nums {
		out.RawSetInt(i+1, lua.LNumber(n))
	}
	for i, s := range strs {
		out.RawSetInt(len(nums)+i+1, lua.LString(s))
	}
	L.Push(out)
	return 1
}

// fwRegister is fw.register{name=, hook=, priority=, match=, fn=}.
func fwRegister(L *lua.LState) int {
	ps := stateOf(L)
	if !ps.loading {
		L.RaiseError("fw.register can only be called while the plugin loads (at its top level)")
	}
	if len(ps.regs) >= MaxRegistrations {
		L.RaiseError("fw.register: a plugin registers at most %d callbacks", MaxRegistrations)
	}
	t := L.CheckTable(1)
	r := registration{priority: PriorityFilter}
	var fn *lua.LFunction
	var bad string
	t.ForEach(func(k, v lua.LValue) {
		key, _ := k.(lua.LString)
		switch key {
		case "name":
			s, ok := v.(lua.LString)
			if !ok || s == "" {
				bad = "fw.register: name must be a non-empty string"
			} else if len(s) > MaxNameLen {
				bad = fmt.Sprintf("fw.register: name of %d bytes is longer than the limit of %d bytes", len(s), MaxNameLen)
			}
			r.name = string(s)
		case "hook":
			hooks, err := parseHooks(v)
			if err != nil {
				bad = "fw.register: " + err.Error()
			}
			r.hooks = hooks
		case "priority":
			p, err := parsePriority(v)
			if err != nil {
				bad = "fw.register: " + err.Error()
			}
			r.priority = p
		case "match":
			m, err := parseMatch(v)
			if err == nil {
				r.matcher, err = m.compile()
			}
			if err != nil {
				bad = "fw.register: match: " + err.Error()
			}
		case "fn":
			f, ok := v.(*lua.LFunction)
			if !ok {
				bad = fmt.Sprintf("fw.register: fn must be a function, not %s", v.Type())
			}
			fn = f
		default:
			bad = fmt.Sprintf("fw.register: unknown field %s (want name, hook, priority, match, fn)", sandbox.QuoteCut(k.String(), MaxNameLen))
		}
	})
	switch {
	case bad != "":
		L.RaiseError("%s", bad)
	case fn == nil:
		L.RaiseError("fw.register: fn (the callback function) is missing")
	case len(r.hooks) == 0:
		L.RaiseError("fw.register: hook is missing (one of %v, or a list of them)", hookNames)
	}
	if err := checkCgroupHooks(&r); err != nil { // cgroup.go
		L.RaiseError("fw.register: %s", err)
	}
	if r.name == "" {
		r.name = ps.p.name()
		if len(ps.regs) > 0 {
			r.name = fmt.Sprintf("%s#%d", ps.p.name(), len(ps.regs)+1)
		}
	}
	ps.regs = append(ps.regs, r)
	ps.fns = append(ps.fns, fn)
	return 0
}
func parseHooks(v lua.LValue) ([]Hook, error) {
	switch x := v.(type) {
	case lua.LString:
		h, err := ParseHook(string(x))
		if err != nil {
			return nil, err
		}
		return []Hook{h}, nil
	case *lua.LTable:
		var hooks []Hook
		var err error
		sandbox.Contents(x).ForEach(func(_, hv lua.LValue) {
			s, ok := hv.(lua.LString)
			if !ok {
				err = fmt.Errorf("hook list entries must be strings, not %s", hv.Type())
				return
			}
			h, herr := ParseHook(string(s))
			if herr != nil {
				err = herr
				return
			}
			for _, have := range hooks {
				if have == h {
					return
				}
			}
			hooks = append(hooks, h)
		})
		return hooks, err
	}
	return nil, fmt.Errorf("hook must be a string or a list of strings, not %s", v.Type())
}

func parsePriority(v lua.LValue) (int, error) {
	switch x := v.(type) {
	case lua.LNumber:
		f := float64(x)
		if f != math.Trunc(f) || f < math.MinInt32 || f > math.MaxInt32 {
			return 0, fmt.Errorf("priority must be an integer in the int32 range, not %v", f)
		}
		return int(f), nil
	case lua.LString:
		prios := PriorityNames()
		if p, ok := prios[string(x)]; ok {
			return p, nil
		}
		names := make([]string, 0, len(prios))
		for n := range prios {
			names = append(names, n)
		}
		sort.Strings(names)
		return 0, fmt.Errorf("unknown priority %q (want a number or one of %v)", string(x), names)
	}
	return 0, fmt.Errorf("priority must be a number or a name, not %s", v.Type())
}

package host

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/luafw/luafw/host/netset"
	"github.com/luafw/luafw/host/state"
)

// pluginState is one plugin's Lua state in one worker (or in the load-time
// probe, where w is nil).
type pluginState struct {
	p       *plugin
	w       *Worker
	L       *lua.LState
	loading bool
	epoch   uint64 // of p when made
	regs    []registration
	fns     []*lua.LFunction
	pkt     *lua.LUserData // the packet view, reused for every packet
	tcp     *lua.LUserData // pkt.tcp
	ct      *lua.LUserData // pkt.ct
}

// newPluginState makes a sandboxed state for p, sets up its API and runs
// its top level, which registers its callbacks.
func (e *Engine) newPluginState(p *plugin, w *Worker) (*pluginState, error) {
	ps := &pluginState{p: p, w: w, L: newSandbox(), loading: true, epoch: p.epoch.Load()}
	L := ps.L
	g := L.G.Global
	set := func(name string, v lua.LValue) {
		if t, ok := v.(*lua.LTable); ok {
			v = readOnly(L, t, name)
		}
		g.RawSetString(name, v)
	}
	set("fw", e.fwModule(ps))
	set("net", e.netModule(ps))
	set("state", e.stateModule(ps))
	set("log", e.logModule(ps))
	set("time", e.timeModule(ps))
	set("bit", bitModule(L))
	g.RawSetString("print", L.NewFunction(func(L *lua.LState) int {
		e.scriptLog(ps, slog.LevelInfo, L, 1)
		return 0
	}))
	for name, m := range protoModules(L) {
		set(name, m)
	}
	for _, m := range e.opts.Modules {
		set(m.Name, m.Open(L))
	}
	ps.initPacket(e)

	ctx, cancel := e.loadContext()
	defer cancel()
	L.SetContext(ctx)
	L.Push(L.NewFunctionFromProto(p.proto))
	err := L.PCall(0, 0, nil)
	ps.loading = false
	if err != nil {
		L.Close()
		if context.Cause(ctx) == errMemoryCeiling {
			return nil, &LoadError{Plugin: p.name(), File: p.spec.File, Reason: "top level cut off: the process is near its memory ceiling"}
		}
		if ctx.Err() != nil {
			return nil, &LoadError{Plugin: p.name(), File: p.spec.File, Reason: fmt.Sprintf("top level did not finish within %v", loadBudget)}
		}
		return nil, luaError(p.spec, err)
	}
	if w != nil {
		L.SetContext(w.luaCtx)
		if len(ps.regs) != len(p.regs) {
			L.Close()
			return nil, fmt.Errorf("plugin %s registered %d callbacks in this worker but %d at load", p.name(), len(ps.regs), len(p.regs))
		}
	} else {
		L.RemoveContext()
	}
	return ps, nil
}

// fwModule is the fw table: registration, verdicts, priorities, options.
func (e *Engine) fwModule(ps *pluginState) *lua.LTable {
	L := ps.L
	fw := L.NewTable()
	fw.RawSetString("ACCEPT", lua.LNumber(luaAccept))
	fw.RawSetString("DROP", lua.LNumber(luaDrop))
	fw.RawSetString("STOP", lua.LNumber(luaStop))
	fw.RawSetString("REJECT", lua.LNumber(luaReject))
	fw.RawSetString("REPEAT", lua.LNumber(luaRepeat))
	prio := L.NewTable()
	for name, v := range PriorityNames() {
		prio.RawSetString(name, lua.LNumber(v))
	}
	// Plain tables (pairs, ipairs and # work on them); each state has its
	// own copy, so a script that writes to one changes only its own view.
	fw.RawSetString("priority", prio)
	hooks := L.NewTable()
	for _, h := range Hooks() {
		hooks.Append(lua.LString(h.String()))
	}
	fw.RawSetString("hooks", hooks)
	fw.RawSetString("plugin", lua.LString(ps.p.name()))
	opts := L.NewTable()
	for k, v := range ps.p.spec.Options {
		opts.RawSetString(k, goToLua(L, v))
	}
	fw.RawSetString("options", opts)
	// fw.option(name, default [, types]): an option's value, or default
	// when it is not set; types ("number", "string|table", ...) makes a
	// value of another type a load error naming the plugin and option.
	fw.RawSetString("option", L.NewFunction(func(L *lua.LState) int {
		name := L.CheckString(1)
		v := opts.RawGetString(name)
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
	}))
	// fw.list(v): v when it is a table, else a list of v ({} for nil), so an
	// option may be given as one value or a list.
	fw.RawSetString("list", L.NewFunction(func(L *lua.LState) int {
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
	}))
	fw.RawSetString("register", L.NewFunction(ps.register))
	return fw
}

// register is fw.register{name=, hook=, priority=, fn=}.
func (ps *pluginState) register(L *lua.LState) int {
	if !ps.loading {
		L.RaiseError("fw.register can only be called while the plugin loads (at its top level)")
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
		case "fn":
			f, ok := v.(*lua.LFunction)
			if !ok {
				bad = fmt.Sprintf("fw.register: fn must be a function, not %s", v.Type())
			}
			fn = f
		default:
			bad = fmt.Sprintf("fw.register: unknown field %q (want name, hook, priority, fn)", k.String())
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
		x.ForEach(func(_, hv lua.LValue) {
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

// netModule is net.cidr, net.set and net.load.
func (e *Engine) netModule(ps *pluginState) *lua.LTable {
	L := ps.L
	m := L.NewTable()
	setMT := L.NewTypeMetatable("luafw.netset")
	setMT.RawSetString("__index", L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
		"contains": func(L *lua.LState) int {
			s := checkSet(L)
			L.Push(lua.LBool(s.Contains(checkAddr(L, 2))))
			return 1
		},
		"size": func(L *lua.LState) int {
			L.Push(lua.LNumber(checkSet(L).Len()))
			return 1
		},
	}))
	setMT.RawSetString("__metatable", lua.LString(lockedMeta))
	wrap := func(s *netset.Set) *lua.LUserData { return newUD(L, s, setMT) }
	m.RawSetString("cidr", L.NewFunction(func(L *lua.LState) int {
		arg := L.CheckString(1)
		s, err := netset.Parse([]string{arg})
		if err != nil {
			L.ArgError(1, err.Error())
		}
		L.Push(wrap(s))
		return 1
	}))
	m.RawSetString("set", L.NewFunction(func(L *lua.LState) int {
		t := L.CheckTable(1)
		entries := make([]string, 0, t.Len())
		t.ForEach(func(_, v lua.LValue) { entries = append(entries, lua.LVAsString(v)) })
		s, err := netset.Parse(entries)
		if err != nil {
			L.ArgError(1, err.Error())
		}
		L.Push(wrap(s))
		return 1
	}))
	m.RawSetString("load", L.NewFunction(func(L *lua.LState) int {
		if !ps.loading {
			L.RaiseError("net.load can only be called while the plugin loads")
		}
		s, err := ps.p.loadSet(L.CheckString(1))
		if err != nil {
			L.RaiseError("net.load: %v", err)
		}
		L.Push(wrap(s))
		return 1
	}))
	domainsModule(L, m)
	m.RawSetString("ip", L.NewFunction(func(L *lua.LState) int {
		a, err := netip.ParseAddr(L.CheckString(1))
		if err != nil {
			L.Push(lua.LNil)
			return 1
		}
		L.Push(lua.LString(a.Unmap().String()))
		return 1
	}))
	return m
}

// newUD wraps a Go value for scripts, with the methods of mt.
func newUD(L *lua.LState, v any, mt *lua.LTable) *lua.LUserData {
	ud := L.NewUserData()
	ud.Value = v
	ud.Metatable = mt
	return ud
}

// checkUD unwraps the method receiver (argument 1), raising a clear error
// when it is not a T.
func checkUD[T any](L *lua.LState, what string) T {
	v, ok := L.CheckUserData(1).Value.(T)
	if !ok {
		L.ArgError(1, "not a "+what)
	}
	return v
}

func checkSet(L *lua.LState) *netset.Set { return checkUD[*netset.Set](L, "net set") }

// checkAddr reads an address argument: a string, or the packet itself is
// not accepted (use pkt.src).
func checkAddr(L *lua.LState, n int) netip.Addr {
	s := L.CheckString(n)
	a, err := netip.ParseAddr(s)
	if err != nil {
		L.ArgError(n, fmt.Sprintf("not an IP address: %q", s))
	}
	return a
}

// loadSet reads a CIDR list file (relative paths from the plugin's
// directory), once per loaded set of plugins.
func (p *plugin) loadSet(path string) (*netset.Set, error) {
	if !filepath.IsAbs(path) {
		path = filepath.Join(filepath.Dir(p.spec.File), path)
	}
	p.filesMu.Lock()
	defer p.filesMu.Unlock()
	if s, ok := p.files[path]; ok {
		return s, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s, err := netset.Read(f, path)
	if err != nil {
		return nil, err
	}
	p.files[path] = s
	return s, nil
}

// stateModule is state.map, state.counter and state.bucket.
func (e *Engine) stateModule(ps *pluginState) *lua.LTable {
	L := ps.L
	m := L.NewTable()
	mapMT := L.NewTable()
	mapMT.RawSetString("__index", L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
		"get": func(L *lua.LState) int {
			v, ok := checkMap(L).Get(L.CheckString(2))
			if !ok {
				L.Push(lua.LNil)
				return 1
			}
			L.Push(fromValue(v))
			return 1
		},
		"set": func(L *lua.LState) int {
			err := checkMap(L).Set(L.CheckString(2), toValue(L, 3), optSeconds(L, 4))
			if err != nil {
				L.Push(lua.LFalse)
				L.Push(lua.LString(err.Error()))
				return 2
			}
			L.Push(lua.LTrue)
			return 1
		},
		"incr": func(L *lua.LState) int {
			n, err := checkMap(L).Incr(L.CheckString(2), float64(L.OptNumber(3, 1)), float64(L.OptNumber(5, 0)), optSeconds(L, 4))
			if err != nil {
				L.RaiseError("state map incr: %v", err)
			}
			L.Push(lua.LNumber(n))
			return 1
		},
		"delete": func(L *lua.LState) int {
			checkMap(L).Delete(L.CheckString(2))
			return 0
		},
		"len": func(L *lua.LState) int {
			L.Push(lua.LNumber(checkMap(L).Len()))
			return 1
		},
	}))
	mapMT.RawSetString("__metatable", lua.LString(lockedMeta))
	m.RawSetString("map", L.NewFunction(func(L *lua.LState) int {
		L.Push(newUD(L, e.store.Map(L.CheckString(1)), mapMT))
		return 1
	}))

	counterMT := L.NewTable()
	counterMT.RawSetString("__index", L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
		"incr": func(L *lua.LState) int {
			L.Push(lua.LNumber(checkUD[*state.Counter](L, "state counter").Add(int64(L.OptInt64(2, 1)))))
			return 1
		},
		"get": func(L *lua.LState) int {
			L.Push(lua.LNumber(checkUD[*state.Counter](L, "state counter").Get()))
			return 1
		},
	}))
	counterMT.RawSetString("__metatable", lua.LString(lockedMeta))
	m.RawSetString("counter", L.NewFunction(func(L *lua.LState) int {
		L.Push(newUD(L, e.store.Counter(L.CheckString(1)), counterMT))
		return 1
	}))

	bucketMT := L.NewTable()
	bucketMT.RawSetString("__index", L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
		"take": func(L *lua.LState) int {
			b := checkUD[*state.Bucket](L, "state bucket")
			L.Push(lua.LBool(b.TakeN(L.CheckString(2), float64(L.OptNumber(3, 1)))))
			return 1
		},
	}))
	bucketMT.RawSetString("__metatable", lua.LString(lockedMeta))
	m.RawSetString("bucket", L.NewFunction(func(L *lua.LState) int {
		name := L.CheckString(1)
		opts := L.CheckTable(2)
		rate, ok1 := opts.RawGetString("rate").(lua.LNumber)
		burst, ok2 := opts.RawGetString("burst").(lua.LNumber)
		if !ok1 || !ok2 {
			L.ArgError(2, "want {rate = tokens per second, burst = bucket size}")
		}
		b, err := e.store.Bucket(name, float64(rate), float64(burst))
		if err != nil {
			L.RaiseError("state.bucket: %v", err)
		}
		L.Push(newUD(L, b, bucketMT))
		return 1
	}))
	return m
}

func checkMap(L *lua.LState) *state.Map { return checkUD[*state.Map](L, "state map") }

func optSeconds(L *lua.LState, n int) time.Duration {
	return time.Duration(float64(L.OptNumber(n, 0)) * float64(time.Second))
}

func toValue(L *lua.LState, n int) state.Value {
	switch v := L.Get(n).(type) {
	case lua.LNumber:
		return state.Value{Kind: state.Number, Num: float64(v)}
	case lua.LString:
		return state.Value{Kind: state.String, Str: string(v)}
	case lua.LBool:
		return state.Value{Kind: state.Bool, Bool: bool(v)}
	case *lua.LNilType:
		return state.Value{}
	default:
		L.ArgError(n, fmt.Sprintf("state values are numbers, strings or booleans, not %s", v.Type()))
	}
	return state.Value{}
}

func fromValue(v state.Value) lua.LValue {
	switch v.Kind {
	case state.Number:
		return lua.LNumber(v.Num)
	case state.String:
		return lua.LString(v.Str)
	case state.Bool:
		return lua.LBool(v.Bool)
	}
	return lua.LNil
}

// logModule is log.debug/info/warn/error(msg, {fields}), rate-limited per
// plugin.
func (e *Engine) logModule(ps *pluginState) *lua.LTable {
	L := ps.L
	m := L.NewTable()
	for name, level := range map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError} {
		m.RawSetString(name, L.NewFunction(func(L *lua.LState) int {
			e.scriptLog(ps, level, L, 0)
			return 0
		}))
	}
	return m
}

// scriptLog logs a script's line. With fields == 0 the arguments are a
// message and an optional table of fields; otherwise they are print's.
func (e *Engine) scriptLog(ps *pluginState, level slog.Level, L *lua.LState, printStyle int) {
	if !e.log.Enabled(context.Background(), level) {
		return
	}
	ok, suppressed := ps.p.logLimiter.allow(e.nanos())
	if !ok {
		return
	}
	attrs := []any{"plugin", ps.p.name()}
	var msg string
	if printStyle != 0 {
		for i := 1; i <= L.GetTop(); i++ {
			if i > 1 {
				msg += "\t"
			}
			msg += L.ToStringMeta(L.Get(i)).String()
		}
	} else {
		msg = L.ToStringMeta(L.Get(1)).String()
		if t, ok := L.Get(2).(*lua.LTable); ok {
			// Sorted: a Lua table's order changes from run to run.
			var keys []string
			vals := map[string]lua.LValue{}
			t.ForEach(func(k, v lua.LValue) {
				keys = append(keys, k.String())
				vals[k.String()] = v
			})
			sort.Strings(keys)
			for _, k := range keys {
				attrs = append(attrs, k, luaToAttr(vals[k]))
			}
		}
	}
	if suppressed > 0 {
		attrs = append(attrs, "suppressed", suppressed)
	}
	if where := L.Where(1); where != "" {
		attrs = append(attrs, "at", where[:len(where)-1])
	}
	e.log.Log(context.Background(), level, msg, attrs...)
}

func luaToAttr(v lua.LValue) any {
	switch x := v.(type) {
	case lua.LNumber:
		return float64(x)
	case lua.LBool:
		return bool(x)
	}
	return v.String()
}

// timeModule is time.now(): seconds (with fraction) from the engine clock.
func (e *Engine) timeModule(ps *pluginState) *lua.LTable {
	L := ps.L
	m := L.NewTable()
	m.RawSetString("now", L.NewFunction(func(L *lua.LState) int {
		t := e.opts.Clock()
		L.Push(lua.LNumber(float64(t.UnixNano()) / 1e9))
		return 1
	}))
	return m
}

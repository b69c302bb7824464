package engine

import (
	"context"
	"fmt"

	"github.com/luafw/luafw/internal/sandbox"
	"github.com/luafw/luafw/internal/watchdog"

	lua "github.com/luafw/luafw/lua"
)

// pluginState is one plugin's Lua state in one worker (or in the load-time
// probe, where w is nil).
type pluginState struct {
	e       *Engine
	p       *plugin
	w       *Worker
	L       *lua.LState
	self    *lua.LUserData // holds ps: the upvalue of the module functions
	loading bool
	epoch   uint64 // of p when made
	regs    []registration
	fns     []*lua.LFunction
	options *lua.LTable  // fw.options, which fw.option reads
	schema  []OptionSpec // what fw.schema declared
	// optionErr is a bad option at its place in the configuration, which
	// the load reports instead of the error fw.schema raised.
	optionErr *LoadError
	pkt       *lua.LUserData // the packet view, reused for every packet
	tcp       *lua.LUserData // pkt.tcp
	ct        *lua.LUserData // pkt.ct
	timers    []*timer       // set in this state (timers.go); they run only in a timer worker's
	inTimer   bool           // a timer function is running
	flows     *flowTable     // pkt.flow's tables, made on first use (flowtable.go)
}

// Each Lua module of luafw is an open function (openFw, openNet, ...) that
// builds its table from a package-level table of named functions, as
// gopher-lua's own modules do. A function that needs its plugin's state
// gets it through its first upvalue (stateOf), set by SetFuncs.

// apiModules are luafw's Lua modules, each set as a global of every plugin
// state (read-only), one file each; dns and tls (protolib.go) come with
// them, and print (loglib.go).
var apiModules = [...]struct {
	name string
	open func(ps *pluginState) lua.LValue
}{
	{"fw", func(ps *pluginState) lua.LValue { return openFw(ps) }},               // fwlib.go
	{"net", func(ps *pluginState) lua.LValue { return openNet(ps) }},             // netlib.go
	{"state", func(ps *pluginState) lua.LValue { return openState(ps) }},         // statelib.go
	{"log", func(ps *pluginState) lua.LValue { return openLog(ps) }},             // loglib.go
	{"time", func(ps *pluginState) lua.LValue { return openTime(ps) }},           // timelib.go
	{"bit", func(ps *pluginState) lua.LValue { return sandbox.OpenBit(ps.L) }},   // internal/sandbox
	{"packet", func(ps *pluginState) lua.LValue { return packetBuilders(ps.L) }}, // packetlib.go
	{"stream", func(ps *pluginState) lua.LValue { return openStream(ps) }},       // streamlib.go
}

// stateOf returns the pluginState a module function was registered for.
func stateOf(L *lua.LState) *pluginState {
	return L.Get(lua.UpvalueIndex(1)).(*lua.LUserData).Value.(*pluginState)
}

// newPluginState makes a sandboxed state for p, sets up its API and runs
// its top level, which registers its callbacks.
func (e *Engine) newPluginState(p *plugin, w *Worker) (*pluginState, error) {
	ps := &pluginState{e: e, p: p, w: w, L: sandbox.NewState(), loading: true, epoch: p.epoch.Load()}
	L := ps.L
	ps.self = L.NewUserData()
	ps.self.Value = ps
	g := L.G.Global
	set := func(name string, v lua.LValue) {
		if t, ok := v.(*lua.LTable); ok {
			v = sandbox.ReadOnly(L, t, name)
		}
		g.RawSetString(name, v)
	}
	for _, m := range apiModules {
		set(m.name, m.open(ps))
	}
	g.RawSetString("print", L.NewClosure(luaPrint, ps.self))
	for name, m := range protoModules(L) {
		set(name, m)
	}
	for _, m := range e.opts.Modules {
		set(m.Name, m.Open(L))
	}
	ps.openPacket()
	openTimers(ps)

	ctx, cancel := e.topLevelContext(p, w)
	defer cancel()
	L.SetContext(ctx)
	L.Push(L.NewFunctionFromProto(p.proto))
	err := L.PCall(0, 0, nil)
	ps.loading = false
	if ps.optionErr != nil { // even when the script caught the error
		L.Close()
		return nil, ps.optionErr
	}
	if err != nil {
		L.Close()
		if context.Cause(ctx) == watchdog.ErrMemoryCeiling {
			return nil, &LoadError{Plugin: p.name(), File: p.spec.File, Reason: "top level cut off: the process is near its memory ceiling"}
		}
		if ctx.Err() != nil {
			return nil, &LoadError{Plugin: p.name(), File: p.spec.File, Line: errLine(p.spec.File, err), Reason: fmt.Sprintf("top level did not finish within %v", loadBudget)}
		}
		return nil, luaError(p.spec, err)
	}
	if w != nil {
		L.RemoveContext()
		L.SetInterrupt(w.slot.Interrupt())
		L.SetPoll(watchdog.PollEvery, w.slot.Poll)
		if e.wd.WatchesHeap() {
			L.SetConcatCheck(w.slot.ConcatCheck)
		}
		if len(ps.regs) != len(p.regs) {
			L.Close()
			return nil, fmt.Errorf("plugin %s registered %d callbacks in this worker but %d at load", p.name(), len(ps.regs), len(p.regs))
		}
	} else {
		L.RemoveContext()
	}
	return ps, nil
}

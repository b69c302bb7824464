package engine

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/luafw/luafw/internal/watchdog"
	lua "github.com/luafw/luafw/lua"

	"github.com/luafw/luafw/host/state"
)

// Options configure an Engine.
type Options struct {
	// Logger receives the engine's and the scripts' log lines; default
	// slog.Default().
	Logger *slog.Logger
	// Clock is what scripts see as time.now() and what state TTLs and token
	// buckets use; default: the wall clock as of the watchdog's last tick
	// (250µs resolution; reading the real clock costs ~200ns on VMs). Tests,
	// `luafw test` and `luafw replay` give their own.
	Clock func() time.Time
	// Modules are Lua modules of the embedding program, set as globals in
	// every plugin's state.
	Modules []Module
	// StateLimits bound the shared state (see host/state).
	StateLimits state.Limits
	// InjectRate and InjectBurst bound the packets each plugin may send
	// (fw.send, pkt:reply_*): a token bucket per plugin; defaults
	// DefaultInjectRate and DefaultInjectBurst.
	InjectRate  float64
	InjectBurst int
	// Cluster holds the state scripts ask for with {scope = "cluster"}
	// (host/state/cluster shares it through Redis); when nil, such state
	// is this engine's alone.
	Cluster ClusterState
	// WatchdogInterval is how often running callbacks are checked against
	// their budget; default 250µs.
	WatchdogInterval time.Duration
	// MemoryLimit is the process ceiling in bytes: when the Go heap in
	// use passes half of it, every running Lua call is cut off (package
	// watchdog); 0: no ceiling. The engine does not change the Go
	// runtime's settings; a program that wants the GC to hold garbage
	// below the cut line calls watchdog.SetMemoryCeiling, which is
	// process-wide (the daemon and `luafw replay` do).
	MemoryLimit int64
	// MemoryCheckInterval is how often each worker measures what its
	// plugins' Lua states keep; default DefaultMemoryCheckInterval.
	MemoryCheckInterval time.Duration
	// PacketBudget is the total time the Lua callbacks of one hook may
	// spend on one packet, all plugins together. When it runs out, the
	// running callback is cut off and the remaining Lua callbacks are not
	// run: each gives its plugin's on_error verdict as if it had failed
	// (so the packet gets the first on_error that is not accept, or
	// accept), without counting as a failure of the plugin; Go callbacks
	// still run. Counted per callback (CallbackStats.OverBudget) and per
	// packet (Decision.OverBudget). Default: DefaultPacketBudget, or the
	// longest per-call budget of the loaded plugins when that is longer.
	PacketBudget time.Duration
	// StrictChecks makes the warnings of the static checks (lint.go) load
	// errors, as `luafw check --strict` does.
	StrictChecks bool
	// Warn receives each warning of the static checks when a plugin
	// loads; default: logged at level WARN with its file:line.
	Warn func(Finding)
	// ManualTimers: the engine runs no timers (fw.every, fw.after) by
	// itself; the owner calls RunTimersUntil after moving its Clock (luafw
	// test and luafw replay). Otherwise a goroutine of the engine runs
	// them on time.
	ManualTimers bool
}

// Module is a Lua module an embedding program gives scripts: Open builds
// the value (usually a table of functions) that scripts see as the global
// Name. Open runs once per Lua state.
type Module struct {
	Name string
	Open func(L *lua.LState) lua.LValue
}

// GoFunc is a native callback in a chain. It returns a verdict like a Lua
// callback and may use the Ctx's actions (marks, tags, conntrack).
type GoFunc func(c *Ctx) Verdict

type goCallback struct {
	hook     Hook
	priority int
	name     string
	fn       GoFunc
	matcher  *matcher
}

// entry is one callback in a chain.
type entry struct {
	priority int
	plugin   int // index in generation.plugins; -1 for a Go callback
	reg      int // registration index within the plugin
	goFn     GoFunc
	matcher  *matcher // nil: every packet
	name     string
	owner    string // plugin name, or "go" for Go callbacks
	stats    *cbStats
}

// generation is one loaded set of plugins and the chains built from them.
// It never changes once published; a reload publishes a new one.
type generation struct {
	id      uint64
	plugins []*plugin
	chains  [NumHooks][]entry
	// packetBudget is Options.PacketBudget or its default for plugins.
	packetBudget time.Duration
}

// Engine owns the loaded plugins and their chains. It is safe for
// concurrent use; packets are run by Workers.
type Engine struct {
	opts  Options
	log   *slog.Logger
	store *state.Store
	// cluster is Options.Cluster, or a localCluster.
	cluster ClusterState

	// wd cuts off calls over their budget or over the memory ceiling, and
	// keeps the coarse clocks (package watchdog).
	wd *watchdog.Watchdog

	gen     atomic.Pointer[generation]
	tap     atomic.Pointer[Tap] // the attached trace, nil when none (host/trace.go); beside gen: one cache line
	loadMu  sync.Mutex          // serializes Load and RegisterFunc
	goFuncs []goCallback
	genSeq  uint64

	statsMu sync.Mutex
	stats   map[statsKey]*cbStats

	pluginStats map[string]*pluginCounters // guarded by statsMu
	memLog      tokenLimiter
	budgetLog   tokenLimiter // packet budget runs out (worker.go)
	stateNames  engineStateNames
	lastMeasure time.Time // the watchdog goroutine's: when workers were last asked to measure

	workersMu sync.Mutex
	workers   map[*Worker]struct{}
	nextID    int

	pool chan *Worker

	numbers []lua.LValue // LNumber values 0..65535, boxed once

	inject injectLimiter // per-plugin send budgets (inject.go)

	timers *timerHost // fw.every, fw.after (timers.go)

}

// New returns an engine with no plugins loaded: every packet is accepted
// until Load. Close stops its background goroutine. It changes nothing
// process-wide.
func New(opts Options) *Engine {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.WatchdogInterval <= 0 {
		opts.WatchdogInterval = 250 * time.Microsecond
	}
	if opts.MemoryCheckInterval <= 0 {
		opts.MemoryCheckInterval = DefaultMemoryCheckInterval
	}
	e := &Engine{
		opts:    opts,
		log:     opts.Logger,
		stats:   map[statsKey]*cbStats{},
		workers: map[*Worker]struct{}{},
		pool:    make(chan *Worker, 64),
		numbers: make([]lua.LValue, 65536),
	}
	e.pluginStats = map[string]*pluginCounters{}
	for i := range e.numbers {
		e.numbers[i] = lua.LNumber(i)
	}
	if e.opts.Clock == nil {
		e.opts.Clock = e.wallClock
	}
	e.store = state.NewStore(state.Clock(e.opts.Clock), opts.StateLimits)
	e.cluster = opts.Cluster
	if e.cluster == nil {
		e.cluster = localCluster{state.NewStore(state.Clock(e.opts.Clock), opts.StateLimits)}
	}
	e.gen.Store(&generation{})
	e.timers = newTimerHost(e, opts.ManualTimers)
	e.lastMeasure = time.Now()
	e.wd = watchdog.New(watchdog.Options{
		Interval: opts.WatchdogInterval, MemoryLimit: opts.MemoryLimit,
		Tick: e.tick, Sweep: e.sweep, MemoryCut: e.logMemoryCut,
	})
	return e
}

// Close stops the engine's background work and closes pooled workers.
// Workers made by NewWorker are closed by their owners.
func (e *Engine) Close() {
	e.timers.close()
	e.wd.Close()
	for {
		select {
		case w := <-e.pool:
			w.Close()
		default:
			return
		}
	}
}

// State returns the shared state store scripts use.
func (e *Engine) State() *state.Store { return e.store }

// nanos is the engine's monotonic clock for budgets and quarantine.
func (e *Engine) nanos() int64 { return e.wd.Nanos() }

// Load compiles the plugins and runs each one's top level once to collect
// its registrations, then replaces the running set atomically. If anything
// fails, the running set is left as it was and the error (a *LoadError for
// script problems) names the file and line. It is Prepare then Commit.
func (e *Engine) Load(specs []PluginSpec) error {
	return e.LoadContext(context.Background(), specs)
}

// LoadContext is Load that stops when ctx ends (see PrepareContext).
func (e *Engine) LoadContext(ctx context.Context, specs []PluginSpec) error {
	p, err := e.PrepareContext(ctx, specs)
	if err != nil {
		return err
	}
	e.Commit(p)
	return nil
}

// probe runs a plugin's top level in a throwaway state to learn and check
// its registrations.
func (e *Engine) probe(p *plugin) error {
	ps, err := e.newPluginState(p, nil)
	if err != nil {
		return err
	}
	defer ps.L.Close()
	var m memWalker
	if n := m.measure(ps, p.spec.Memory); n > p.spec.Memory {
		return &LoadError{Plugin: p.name(), File: p.spec.File,
			Reason: fmt.Sprintf("its top level keeps more than its memory limit of %d bytes", p.spec.Memory)}
	}
	if len(ps.regs) == 0 {
		e.log.Warn("plugin registers no callbacks", "plugin", p.name(), "file", p.spec.File)
	}
	p.regs = ps.regs
	return nil
}

// RegisterFunc adds a Go callback to hook's chain at priority. At equal
// priority, Go callbacks run before Lua ones, in registration order. It
// takes effect at once for every worker.
func (e *Engine) RegisterFunc(hook Hook, priority int, name string, fn GoFunc) error {
	return e.RegisterFuncMatch(hook, priority, name, Match{}, fn)
}

// RegisterFuncMatch is RegisterFunc for a callback that wants only the
// packets m admits (see Match).
func (e *Engine) RegisterFuncMatch(hook Hook, priority int, name string, m Match, fn GoFunc) error {
	mt, err := m.compile()
	if err != nil {
		return fmt.Errorf("register %q: match: %w", name, err)
	}
	if int(hook) >= NumHooks {
		return fmt.Errorf("register %q: unknown hook %d", name, hook)
	}
	if fn == nil {
		return fmt.Errorf("register %q: nil function", name)
	}
	e.loadMu.Lock()
	defer e.loadMu.Unlock()
	e.goFuncs = append(e.goFuncs, goCallback{hook: hook, priority: priority, name: name, fn: fn, matcher: mt})
	e.gen.Store(e.build(e.gen.Load().plugins))
	return nil
}

// build makes a generation's chains: each hook's callbacks sorted by
// priority, ties in load order (Go callbacks first). The entries are
// appended in load order and the sort is stable, so equal priorities keep
// that order whatever the number of plugins or registrations. Called with
// loadMu.
func (e *Engine) build(plugins []*plugin) *generation {
	e.genSeq++
	g := &generation{id: e.genSeq, plugins: plugins, packetBudget: e.packetBudget(plugins)}
	for _, gf := range e.goFuncs {
		g.chains[gf.hook] = append(g.chains[gf.hook], entry{
			priority: gf.priority, plugin: -1, goFn: gf.fn, matcher: gf.matcher, name: gf.name, owner: "go",
			stats: e.statsFor("go", gf.name, gf.hook, gf.priority),
		})
	}
	for pi, p := range plugins {
		for ri, r := range p.regs {
			for _, h := range r.hooks {
				g.chains[h] = append(g.chains[h], entry{
					priority: r.priority, plugin: pi, reg: ri, matcher: r.matcher,
					name: r.name, owner: p.name(), stats: e.statsFor(p.name(), r.name, h, r.priority),
				})
			}
		}
	}
	for h := range g.chains {
		slices.SortStableFunc(g.chains[h], func(a, b entry) int { return compareInt(a.priority, b.priority) })
	}
	return g
}

func compareInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (g *generation) callbacks() int {
	n := 0
	for _, c := range g.chains {
		n += len(c)
	}
	return n
}

// CallbackInfo describes one callback of the running chains.
type CallbackInfo struct {
	Hook     Hook
	Priority int
	Plugin   string // "go" for Go callbacks
	Name     string
	File     string
	Match    Match // the zero Match when the callback takes every packet
}

// Chains lists the running callbacks hook by hook, each chain in the order
// it runs.
func (e *Engine) Chains() []CallbackInfo {
	g := e.gen.Load()
	var out []CallbackInfo
	for h, chain := range g.chains {
		for _, en := range chain {
			ci := CallbackInfo{Hook: Hook(h), Priority: en.priority, Plugin: en.owner, Name: en.name}
			if en.matcher != nil {
				ci.Match = en.matcher.m
			}
			if en.plugin >= 0 {
				ci.File = g.plugins[en.plugin].spec.File
			}
			out = append(out, ci)
		}
	}
	return out
}

// HookPriorities returns, per hook, the sorted distinct priorities that
// have callbacks: what the kernel side needs to divert.
func (e *Engine) HookPriorities() map[Hook][]int { return e.gen.Load().hookPriorities() }

func (g *generation) hookPriorities() map[Hook][]int {
	out := map[Hook][]int{}
	for h, chain := range g.chains {
		for _, en := range chain {
			ps := out[Hook(h)]
			if len(ps) == 0 || ps[len(ps)-1] != en.priority {
				out[Hook(h)] = append(ps, en.priority)
			}
		}
	}
	return out
}

// Generation returns the id of the running set; it changes on every
// successful Load or RegisterFunc.
func (e *Engine) Generation() uint64 { return e.gen.Load().id }

// Process runs one packet with a pooled worker, for callers that do not
// keep workers of their own. The decision's Tags are copied.
func (e *Engine) Process(p *Packet) Decision {
	var w *Worker
	select {
	case w = <-e.pool:
	default:
		w = e.NewWorker()
	}
	d := w.Run(p)
	d.Tags = slices.Clone(d.Tags)
	d.Injected = slices.Clone(d.Injected)
	select {
	case e.pool <- w:
	default:
		w.Close()
	}
	return d
}

// tick runs on the watchdog goroutine after each tick: it asks the workers
// to measure their plugins' memory every MemoryCheckInterval.
func (e *Engine) tick(wall time.Time) {
	if wall.Sub(e.lastMeasure) >= e.opts.MemoryCheckInterval {
		e.askWorkers(choreMeasure)
		e.lastMeasure = wall
	}
}

// sweep drops expired shared state; the watchdog runs it about once a
// second.
func (e *Engine) sweep() {
	e.store.Sweep()
	if c, ok := e.cluster.(localCluster); ok {
		c.Sweep()
	}
}

// logMemoryCut logs (rate-limited) that the heap watch cut calls off.
func (e *Engine) logMemoryCut(heap, cutAt, limit int64, calls int) {
	if ok, suppressed := e.memLog.allow(e.nanos()); ok {
		e.log.Error("process memory near its ceiling: running Lua calls cut off", "heap", heap,
			"cut_at", cutAt, "limit", limit, "calls", calls, "suppressed", suppressed)
	}
}

// wallClock is the scripts' and the state store's clock: the watchdog's
// last tick, or the system clock while it sleeps.
func (e *Engine) wallClock() time.Time { return e.wd.WallClock() }

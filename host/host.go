package host

import (
	"context"

	"github.com/luafw/luafw/host/state"
	"github.com/luafw/luafw/internal/engine"
)

// Engine owns the loaded plugins and their chains. It is safe for
// concurrent use; packets are run by Workers.
type Engine struct{ e *engine.Engine }

// New returns an engine with no plugins loaded: every packet is accepted
// until Load or Register adds callbacks. Close it when done.
func New(opts Options) *Engine { return &Engine{e: engine.New(opts)} }

// Close stops the engine's background work. Workers must not be used after
// Close.
func (e *Engine) Close() { e.e.Close() }

// Load compiles the plugins and runs each one's top level once to collect
// its registrations, then replaces the running set atomically. If anything
// fails, the running set is kept and the error (a *LoadError for script
// problems) names the file and line.
func (e *Engine) Load(specs []PluginSpec) error { return e.e.Load(specs) }

// Prepared is a set of plugins compiled by Prepare and not yet running.
type Prepared struct{ p *engine.Prepared }

// Prepare is the first half of Load: it compiles the plugins and collects
// their registrations without changing the running set, so that a program
// can make its own changes (kernel rules, say) before Commit.
func (e *Engine) Prepare(specs []PluginSpec) (*Prepared, error) {
	return e.PrepareContext(context.Background(), specs)
}

// PrepareContext is Prepare that stops when ctx ends (a signal, a program
// shutting down): reading, parsing, compiling and the top-level runs look
// at it within milliseconds, as they look at the load budget.
func (e *Engine) PrepareContext(ctx context.Context, specs []PluginSpec) (*Prepared, error) {
	p, err := e.e.PrepareContext(ctx, specs)
	if err != nil {
		return nil, err
	}
	return &Prepared{p: p}, nil
}

// Commit makes p the running set atomically and returns the set it
// replaced; committing that one rolls back.
func (e *Engine) Commit(p *Prepared) (previous *Prepared) {
	return &Prepared{p: e.e.Commit(p.p)}
}

// RegisterOption changes how Register places a Go callback.
type RegisterOption func(*registration)

type registration struct {
	match    Match
	hasMatch bool
}

// WithMatch gives the callback only the packets m matches, as a plugin's
// fw.register{match = ...} does.
func WithMatch(m Match) RegisterOption {
	return func(r *registration) { r.match, r.hasMatch = m, true }
}

// Register adds a Go callback to hook's chain at priority. At equal
// priority Go callbacks run before Lua ones, in registration order. name
// appears in Chains and Stats.
func (e *Engine) Register(hook Hook, priority int, name string, fn GoFunc, opts ...RegisterOption) error {
	var r registration
	for _, o := range opts {
		o(&r)
	}
	if r.hasMatch {
		return e.e.RegisterFuncMatch(hook, priority, name, r.match, fn)
	}
	return e.e.RegisterFunc(hook, priority, name, fn)
}

// Worker runs packets through the engine's running chains. A worker is not
// safe for concurrent use: make one per goroutine. It follows reloads by
// itself.
type Worker struct{ w *engine.Worker }

// NewWorker returns a worker; Close it when done.
func (e *Engine) NewWorker() *Worker { return &Worker{w: e.e.NewWorker()} }

// Run runs p through the chain of p.Hook and returns the decision. The
// decision's slices are the worker's until the next Run.
func (w *Worker) Run(p *Packet) Decision { return w.w.Run(p) }

// Close releases the worker's Lua states.
func (w *Worker) Close() { w.w.Close() }

// Process runs one packet with a pooled worker, for callers that do not
// keep workers of their own.
func (e *Engine) Process(p *Packet) Decision { return e.e.Process(p) }

// Chains lists the running callbacks hook by hook, each chain in the order
// it runs.
func (e *Engine) Chains() []CallbackInfo { return e.e.Chains() }

// Plugins returns the running plugins' status.
func (e *Engine) Plugins() []PluginStatus { return e.e.Plugins() }

// Stats returns every callback's counters, sorted by plugin, name and hook.
func (e *Engine) Stats() []CallbackStats { return e.e.Stats() }

// State returns the shared state store scripts use (state.map and friends).
func (e *Engine) State() *state.Store { return e.e.State() }

// Generation returns the id of the running set; it changes on every Load,
// Commit and Register.
func (e *Engine) Generation() uint64 { return e.e.Generation() }

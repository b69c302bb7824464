package engine

import (
	"context"
	"fmt"
	"slices"

	"github.com/luafw/luafw/host/netset"
)

// Prepared is a set of plugins compiled and probed, ready to run: one that
// Prepare made and Commit has not yet published, or the set a Commit
// replaced. It holds the compiled code, never the file names alone, so
// committing it again brings back exactly the code it was made from, even
// when the files on disk have changed since.
type Prepared struct {
	plugins []*plugin
	prios   map[Hook][]int
	matches [NumHooks][]hookMatch
}

// HookPriorities is what Engine.HookPriorities will return once p runs
// (with the Go callbacks registered when p was made).
func (p *Prepared) HookPriorities() map[Hook][]int { return p.prios }

// Prepare compiles the plugins and runs each one's top level once to collect
// its registrations, without changing the running set. The error (a
// *LoadError for script problems) names the file and line.
func (e *Engine) Prepare(specs []PluginSpec) (*Prepared, error) {
	return e.PrepareContext(context.Background(), specs)
}

// PrepareContext is Prepare that stops when ctx ends (a signal, a stopping
// daemon): reading, parsing, compiling and the top-level runs look at it,
// as they look at the load budget, within milliseconds. The error is then
// a *LoadError saying so.
func (e *Engine) PrepareContext(ctx context.Context, specs []PluginSpec) (*Prepared, error) {
	e.loadMu.Lock()
	defer e.loadMu.Unlock()
	plugins := make([]*plugin, 0, len(specs))
	seen := map[string]string{}
	for i, spec := range specs {
		spec = spec.normalize()
		if prev, dup := seen[spec.Name]; dup {
			return nil, &LoadError{Plugin: spec.Name, File: spec.File,
				Reason: fmt.Sprintf("plugin name %q is already used by %s (set a distinct name)", spec.Name, prev)}
		}
		seen[spec.Name] = spec.File
		if spec.OnError != Accept && spec.OnError != Drop && spec.OnError != Reject {
			return nil, &LoadError{Plugin: spec.Name, File: spec.File, Reason: fmt.Sprintf("on_error must be accept, drop or reject, not %s", spec.OnError)}
		}
		if ctx.Err() != nil {
			return nil, &LoadError{Plugin: spec.Name, File: spec.File, Reason: fmt.Sprintf("load cancelled: %v", context.Cause(ctx))}
		}
		proto, err := e.compile(ctx, spec)
		if err != nil {
			return nil, err
		}
		dirs, err := resolveAllowDirs(spec)
		if err != nil {
			return nil, err
		}
		p := &plugin{spec: spec, index: i, proto: proto, files: map[string]*netset.Set{}, allowDirs: dirs,
			counters: e.countersFor(spec.Name)}
		p.tagsSet, p.tagsTested, p.tagsComputed = tagLiterals(proto) // crosstags.go
		p.prepareCtx = ctx
		err = e.probe(p)
		p.prepareCtx = nil
		if err != nil {
			if ctx.Err() != nil {
				return nil, &LoadError{Plugin: spec.Name, File: spec.File, Reason: fmt.Sprintf("top level cancelled: %v", context.Cause(ctx))}
			}
			return nil, err
		}
		plugins = append(plugins, p)
	}
	return &Prepared{plugins: plugins, prios: e.prioritiesOf(plugins), matches: e.matchesOf(plugins)}, nil
}

// prioritiesOf is hookPriorities of the generation plugins would make.
// Called with loadMu.
func (e *Engine) prioritiesOf(plugins []*plugin) map[Hook][]int {
	var g generation
	for _, gf := range e.goFuncs {
		g.chains[gf.hook] = append(g.chains[gf.hook], entry{priority: gf.priority})
	}
	for _, p := range plugins {
		for _, r := range p.regs {
			for _, h := range r.hooks {
				g.chains[h] = append(g.chains[h], entry{priority: r.priority})
			}
		}
	}
	for h := range g.chains {
		slices.SortFunc(g.chains[h], func(a, b entry) int { return compareInt(a.priority, b.priority) })
	}
	return g.hookPriorities()
}

// Commit makes p the running set atomically and returns the set it
// replaced, which a later Commit can bring back (a rollback). Workers pick
// the new set up at their next packet; Lua states of plugins in both sets
// are kept. The generation id changes on every Commit, rollbacks included.
func (e *Engine) Commit(p *Prepared) (previous *Prepared) {
	e.loadMu.Lock()
	defer e.loadMu.Unlock()
	old := e.gen.Load()
	g := e.build(p.plugins)
	e.gen.Store(g)
	e.timers.poke()
	e.log.Info("plugins loaded", "generation", g.id, "plugins", len(p.plugins), "callbacks", g.callbacks())
	return &Prepared{plugins: old.plugins, prios: old.hookPriorities(), matches: e.matchesOf(old.plugins)}
}

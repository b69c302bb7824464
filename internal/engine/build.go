package engine

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Building plugin states off the packet path.
//
// A plugin's top level (up to its load budget, 2 s) runs whenever a worker
// needs a new state of it: at a reload (sync) and after a memory overrun
// (rebuild). A worker that serves live traffic (SetBackgroundBuilds) does
// not run it between two packets: it starts a goroutine per state that
// builds it, and keeps deciding packets meanwhile. The new state belongs
// to its builder until the worker takes it, between two packets; gopher-lua
// states are never used by two goroutines at once.
//
// What packets see meanwhile:
//   - At a reload the worker keeps running the previous generation, its
//     chains and its states, whole, until every state of the new one is
//     ready; then it switches between two packets. No packet runs a chain
//     that mixes generations. The worker first waits up to buildWait for
//     the builds, so a plugin whose top level is quick is running at the
//     next packet, as with a synchronous switch; a slow top level (or a
//     loaded machine) leaves the previous generation running longer.
//     Engine.Load and Commit return before workers switch. A caller that
//     promises the new set is in force when it returns (the daemon's
//     reload) calls PrebuildWorkers: it builds every worker's new states
//     at once, off the packet path, and waits for them, so that each
//     worker switches at its next packet.
//   - After a memory overrun the plugin is quarantined (its callbacks give
//     on_error) and its over-limit state is closed at once; until the new
//     state is ready the plugin's callbacks in that worker give on_error
//     too (counted as skipped, not as failures).
//
// Workers without SetBackgroundBuilds (Engine.Process's pool, replay,
// `luafw test`, embedders' workers by default) build in place, as before:
// the packet after a Load runs the new generation.

// buildWait is how long a worker waits, at its first packet of a new
// generation, for the new states before it goes on with the previous one.
const buildWait = 500 * time.Microsecond

// stateBuild is one plugin state being built for a worker in the
// background.
type stateBuild struct {
	p     *plugin
	epoch uint64        // of p when the build started
	ch    chan struct{} // closed when done

	mu      sync.Mutex
	ps      *pluginState
	err     error
	dropped bool // no longer wanted: the builder closes what it makes
}

// SetBackgroundBuilds makes the worker build plugin states (at reloads and
// after memory overruns) on other goroutines while it goes on deciding
// packets, instead of between two packets (see build.go). The daemon's
// queue readers use it. Call it before the worker runs packets.
func (w *Worker) SetBackgroundBuilds(on bool) { w.async = on }

// startBuild starts building a state of p for the worker.
func (w *Worker) startBuild(p *plugin) *stateBuild {
	if old := w.builds[p]; old != nil {
		old.drop()
	}
	b := w.newBuild(p)
	if w.builds == nil {
		w.builds = map[*plugin]*stateBuild{}
	}
	w.builds[p] = b
	return b
}

// newBuild starts building a state of p for the worker on a goroutine of
// its own. It touches nothing the worker owns: PrebuildWorkers calls it
// from the reloading goroutine.
func (w *Worker) newBuild(p *plugin) *stateBuild {
	b := &stateBuild{p: p, epoch: p.epoch.Load(), ch: make(chan struct{})}
	go func() {
		ps, err := w.eng.newPluginState(p, w)
		b.mu.Lock()
		if b.dropped {
			b.mu.Unlock()
			if ps != nil {
				ps.L.Close()
			}
			close(b.ch)
			return
		}
		b.ps, b.err = ps, err
		b.mu.Unlock()
		close(b.ch)
		w.chores.Or(choreBuilt)
	}()
	return b
}

// done reports whether the build finished.
func (b *stateBuild) done() bool {
	select {
	case <-b.ch:
		return true
	default:
		return false
	}
}

// take returns the built state (nil with the error when the top level
// failed); the caller owns it. Only after done.
func (b *stateBuild) take() (*pluginState, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ps, err := b.ps, b.err
	b.ps, b.dropped = nil, true
	return ps, err
}

// drop gives up the build: its state is closed, now or when it is made.
func (b *stateBuild) drop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dropped = true
	if b.ps != nil {
		b.ps.L.Close()
		b.ps = nil
	}
}

// dropBuilds gives up every build of the worker.
func (w *Worker) dropBuilds() {
	w.takePending()
	for p, b := range w.builds {
		b.drop()
		delete(w.builds, p)
	}
}

// building reports whether a state of p is being built for the worker.
func (w *Worker) building(p *plugin) bool {
	_, ok := w.builds[p]
	return ok
}

// PrebuildWorkers starts, for every worker with background builds, the
// states the running generation needs that the worker does not have (its
// new and changed plugins), and waits until they are built or ctx ends.
// Each worker then takes them at its next packet and switches without
// waiting: the daemon calls it at a reload so that the new set is in force
// when the reload answers. A build that is not done when ctx ends goes on;
// that worker keeps its previous generation until it is.
func (e *Engine) PrebuildWorkers(ctx context.Context) error {
	g := e.gen.Load()
	if g == nil {
		return nil
	}
	var all []*stateBuild
	e.workersMu.Lock()
	for w := range e.workers {
		if !w.async {
			continue
		}
		cur := w.current.Load()
		if cur == g {
			continue
		}
		have := map[*plugin]bool{}
		if cur != nil {
			for _, p := range cur.plugins {
				have[p] = true
			}
		}
		w.pendMu.Lock()
		for _, p := range g.plugins {
			if have[p] {
				continue // kept by the worker, unless reset since: it builds that itself
			}
			if old := w.pending[p]; old != nil {
				old.drop()
			}
			if w.pending == nil {
				w.pending = map[*plugin]*stateBuild{}
			}
			b := w.newBuild(p)
			w.pending[p] = b
			all = append(all, b)
		}
		w.pendMu.Unlock()
	}
	e.workersMu.Unlock()
	for _, b := range all {
		select {
		case <-b.ch:
		case <-ctx.Done():
			return fmt.Errorf("workers still building the new plugin states: %w", context.Cause(ctx))
		}
	}
	return nil
}

// takePending moves the builds PrebuildWorkers started for the worker into
// its own; a build it already has for the same plugin and epoch wins.
func (w *Worker) takePending() {
	w.pendMu.Lock()
	pend := w.pending
	w.pending = nil
	w.pendMu.Unlock()
	for p, b := range pend {
		if old := w.builds[p]; old != nil && old.epoch == b.epoch {
			b.drop()
			continue
		}
		if old := w.builds[p]; old != nil {
			old.drop()
		}
		if w.builds == nil {
			w.builds = map[*plugin]*stateBuild{}
		}
		w.builds[p] = b
	}
}

// syncBackground is sync for a worker with background builds: it starts
// the builds the generation g needs and switches to g once all are done.
func (w *Worker) syncBackground(g *generation) {
	w.takePending()
	ready := true
	for _, p := range g.plugins {
		if w.keeps(p) {
			continue
		}
		b := w.builds[p]
		if b == nil || b.epoch != p.epoch.Load() {
			b = w.startBuild(p)
		}
		if !b.done() {
			ready = false
		}
	}
	if !ready && w.waited != g {
		w.waited = g
		ready = w.waitBuilds(g)
	}
	if !ready {
		return
	}
	next := make([]*pluginState, len(g.plugins))
	kept := map[*pluginState]bool{}
	for i, p := range g.plugins {
		if ps := w.kept(p); ps != nil {
			next[i] = ps
			kept[ps] = true
			continue
		}
		b := w.builds[p]
		delete(w.builds, p)
		ps, err := b.take()
		if err != nil {
			w.eng.log.Error("plugin failed to start in worker", "plugin", p.name(), "err", err)
			continue
		}
		next[i] = ps
	}
	for _, ps := range w.ps {
		if ps != nil && !kept[ps] {
			ps.L.Close()
		}
	}
	w.dropBuilds() // builds for plugins g does not run
	w.switchTo(g, next)
}

// waitBuilds waits up to buildWait for the builds of g.
func (w *Worker) waitBuilds(g *generation) bool {
	t := time.NewTimer(buildWait)
	defer t.Stop()
	for _, p := range g.plugins {
		b := w.builds[p]
		if b == nil {
			continue
		}
		select {
		case <-b.ch:
		case <-t.C:
			return false
		}
	}
	return true
}

// keeps reports whether the worker has a state of p it can keep.
func (w *Worker) keeps(p *plugin) bool { return w.kept(p) != nil }

func (w *Worker) kept(p *plugin) *pluginState {
	for _, ps := range w.ps {
		if ps != nil && ps.p == p && ps.epoch == p.epoch.Load() {
			return ps
		}
	}
	return nil
}

// installBuilds puts the states rebuilt in the background in place
// (choreBuilt). Builds for a generation the worker does not run yet are
// left to syncBackground.
func (w *Worker) installBuilds() {
	for i, p := range w.gen.plugins {
		b := w.builds[p]
		if b == nil || w.ps[i] != nil || !b.done() {
			continue
		}
		delete(w.builds, p)
		ps, err := b.take()
		if err != nil {
			w.eng.log.Error("plugin failed to restart in worker", "plugin", p.name(), "err", err)
			continue
		}
		if ps.epoch != p.epoch.Load() {
			ps.L.Close() // reset again meanwhile
			w.startBuild(p)
			continue
		}
		w.ps[i] = ps
	}
}

package engine

import (
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/luafw/luafw/internal/sandbox"
	"github.com/luafw/luafw/internal/watchdog"

	lua "github.com/luafw/luafw/lua"
)

// failKind says how a callback failed.
type failKind uint8

const (
	failError failKind = iota
	failTimeout
	failMemory
)

// Worker runs packets through the chains. Each worker owns one Lua state per
// plugin and must be used by one goroutine at a time; make one per
// goroutine (per queue reader). Compiled code is shared by all workers.
type Worker struct {
	eng      *Engine
	id       int
	gen      *generation
	ps       []*pluginState // by plugin index of gen
	ctx      Ctx
	tags     []string
	injected []Injected // reused backing array of Ctx.injected
	calls    uint64     // callbacks run, for latency sampling

	// slot is how the watchdog sees the worker's calls: budgets are
	// enforced without reading the clock per call (package watchdog).
	slot *watchdog.Slot

	// chores is work asked of the worker between packets (choreMeasure,
	// choreRebuild); mem measures its plugins' states, no sooner than
	// measureAfter.
	chores       atomic.Uint32
	mem          memWalker
	measureAfter time.Time
	// A measurement in progress (pluginmemory.go): walking, the plugin
	// index and state being walked, when it started, the time its slices
	// took, and when the next slice may run.
	walking   bool
	walkI     int
	walkPS    *pluginState
	walkStart time.Time
	walkSpent time.Duration
	nextSlice time.Time
	// pauseMax is the longest housekeeping pause (chores, syncs) in
	// nanoseconds since it was last taken (HousekeepingPauses).
	pauseMax atomic.Int64

	// Background builds (build.go): async is SetBackgroundBuilds; builds
	// are the states being built, by plugin; waited is the generation
	// whose builds the worker has already waited for.
	async  bool
	builds map[*plugin]*stateBuild
	waited *generation
	// current is gen, for PrebuildWorkers on another goroutine; pending
	// are the builds it started, taken by the worker at its next sync.
	current atomic.Pointer[generation]
	pendMu  sync.Mutex
	pending map[*plugin]*stateBuild

	ct      CTSource
	cgroups CgroupSource // cgroup.go

	tr        *workerTrace // tracing state, made when a tap first attaches
	traceHold bool

	// timerWorker: this worker runs timers, not packets, with states only
	// for the plugins that set timers (timers.go).
	timerWorker bool
}

// CTSource looks up a connection's mark when a script reads pkt.ct.mark and
// the packet did not carry it (the kernel side sets one per worker).
type CTSource interface {
	CTMark(c *Ctx) (mark uint32, ok bool)
}

// NewWorker returns a worker for the engine's running plugins; it follows
// reloads by itself. Close it when done.
func (e *Engine) NewWorker() *Worker {
	w := &Worker{eng: e, slot: e.wd.NewSlot()}
	w.ctx.w = w
	e.workersMu.Lock()
	e.nextID++
	w.id = e.nextID
	e.workers[w] = struct{}{}
	e.workersMu.Unlock()
	return w
}

// SetCTSource sets where the worker looks up conntrack marks.
func (w *Worker) SetCTSource(src CTSource) { w.ct = src }

// Close releases the worker's Lua states.
func (w *Worker) Close() {
	w.eng.workersMu.Lock()
	delete(w.eng.workers, w)
	w.eng.workersMu.Unlock()
	w.slot.Close()
	w.dropBuilds()
	w.endWalk()
	for _, ps := range w.ps {
		if ps != nil {
			ps.L.Close()
		}
	}
	w.ps = nil
	w.gen = nil
	w.current.Store(nil)
	if w.tr != nil {
		w.tr.close()
	}
}

// sync brings the worker's Lua states in line with the running generation,
// keeping the states of plugins that are unchanged. With background builds
// (build.go) it may leave the worker on its previous generation for now.
//
// A worker's first sync (it has no generation yet) builds its states in
// place, whatever the mode: there is nothing else to run its first packet
// with. That is the worker's start, not housekeeping, and is not counted
// as a pause.
func (w *Worker) sync(g *generation) {
	if w.gen != nil {
		defer w.notePause(time.Now())
	}
	if w.async && w.gen != nil {
		w.syncBackground(g)
		return
	}
	old := map[*plugin]*pluginState{}
	for _, ps := range w.ps {
		if ps != nil {
			old[ps.p] = ps
		}
	}
	next := make([]*pluginState, len(g.plugins))
	for i, p := range g.plugins {
		if w.timerWorker && !p.timersAtLoad.Load() {
			continue
		}
		if ps, ok := old[p]; ok {
			next[i] = ps
			delete(old, p)
			continue
		}
		ps, err := w.eng.newPluginState(p, w)
		if err != nil {
			// The probe ran the same code; a failure here is the script
			// behaving differently per run. Its callbacks fail over to
			// on_error until it loads.
			w.eng.log.Error("plugin failed to start in worker", "plugin", p.name(), "err", err)
			continue
		}
		next[i] = ps
	}
	for _, ps := range old {
		ps.L.Close()
	}
	w.switchTo(g, next)
}

// switchTo makes g and its states the worker's; a measurement in progress
// starts over on them.
func (w *Worker) switchTo(g *generation, next []*pluginState) {
	if w.walking {
		w.endWalk()
		w.measureAfter = time.Time{}
		w.chores.Or(choreMeasure)
	}
	w.ps = next
	w.gen = g
	w.current.Store(g)
}

// Run runs the packet through its hook's whole chain.
func (w *Worker) Run(p *Packet) Decision {
	return w.RunRange(p, math.MinInt, math.MaxInt)
}

// RunRange runs only the callbacks of the packet's hook whose priority is
// in [lo, hi): the part of the chain one kernel diversion covers.
func (w *Worker) RunRange(p *Packet, lo, hi int) Decision {
	// No wake-up of the watchdog here: calls supervise themselves (package
	// watchdog), and its clocks read the system clock while it sleeps.
	if g := w.eng.gen.Load(); g != w.gen {
		w.sync(g)
	}
	if w.chores.Load() != 0 {
		w.doChores()
	}
	c := &w.ctx
	c.reset(p)
	d := Decision{Verdict: Accept, Hook: p.Hook}
	if int(p.Hook) >= NumHooks {
		return d
	}
	// The only cost of tracing while no tap is attached: one atomic load.
	var tr *workerTrace
	if t := w.eng.tap.Load(); t != nil {
		tr = w.traceBegin(t, c)
	}
	chain := w.gen.chains[p.Hook]
	// The packet budget: the Lua callbacks of this run share it. The
	// calls' own polls measure it (package watchdog): no clock read here.
	w.slot.StartPacket(w.gen.packetBudget)
	over := false
	for i := range chain {
		en := &chain[i]
		if en.priority < lo {
			continue
		}
		if en.priority >= hi {
			break
		}
		if en.matcher != nil && !en.matcher.admits(c) {
			continue
		}
		if tr != nil {
			tr.before(w, c)
		}
		v, out := w.call(en, c)
		if tr != nil {
			tr.after(w, en, c, v, out != callOK)
		}
		switch out {
		case callFailed:
			d.Errors++
		case callOverBudget:
			d.OverBudget++
			over = true
		}
		if v != Accept {
			d.Verdict = v
			d.By, d.ByName = en.owner, en.name
			break
		}
	}
	if over {
		w.logOverBudget(p.Hook, &d)
	}
	d.Mark, d.MarkSet = c.mark, c.markSet
	d.CT = c.ctUpd
	d.Tags = c.tags
	d.CaptureBy = c.captureBy
	if c.Rewritten() {
		d.Data = c.own.Data
	}
	d.Injected = c.injected
	if tr != nil {
		w.traceEnd(tr, &d)
	}
	return d
}

// callOutcome says how a callback call went.
type callOutcome uint8

const (
	callOK callOutcome = iota
	// callFailed: the callback failed (error, timeout, memory,
	// quarantine); the packet got its plugin's on_error.
	callFailed
	// callOverBudget: the packet's budget ran out before or while the
	// callback ran; the packet got its plugin's on_error, and it is not
	// the plugin's failure.
	callOverBudget
)

// call runs one callback and returns its verdict; out says whether the
// plugin's on_error verdict was used instead, and why. One call in
// latencySample is timed for the latency histogram.
func (w *Worker) call(en *entry, c *Ctx) (v Verdict, out callOutcome) {
	slot := en.stats.slot(w.id)
	w.calls++
	timed := w.calls%latencySample == 0
	var t0 int64
	if timed {
		t0 = w.eng.nanos()
	}
	if en.plugin < 0 {
		v, out = w.callGo(en, c)
	} else {
		v, out = w.callLua(en, c)
	}
	slot.verdicts[v].Add(1)
	if timed {
		slot.observe(w.eng.nanos() - t0)
	}
	return v, out
}

func (w *Worker) callGo(en *entry, c *Ctx) (v Verdict, out callOutcome) {
	defer func() {
		if r := recover(); r != nil {
			w.eng.log.Error("go callback panicked", "callback", en.name, "panic", r, "stack", string(debug.Stack()))
			en.stats.slot(w.id).errors.Add(1)
			v, out = Accept, callFailed
		}
	}()
	c.cur = en.owner
	v = en.goFn(c)
	if v >= numVerdicts {
		w.eng.log.Error("go callback returned an unknown verdict", "callback", en.name, "verdict", uint8(v))
		return Accept, callFailed
	}
	return v, callOK
}

func (w *Worker) callLua(en *entry, c *Ctx) (Verdict, callOutcome) {
	p := w.gen.plugins[en.plugin]
	ps := w.ps[en.plugin]
	if w.slot.PacketOver() {
		en.stats.slot(w.id).overBudget.Add(1)
		return p.spec.OnError, callOverBudget
	}
	if ps == nil {
		if w.building(p) {
			// Rebuilt in the background (build.go): on_error meanwhile.
			en.stats.slot(w.id).skipped.Add(1)
			return p.spec.OnError, callFailed
		}
		return w.fail(en, p, failError, "callback %s: plugin is not running in this worker", nil), callFailed
	}
	// The clock is read only while the plugin is (or was) quarantined.
	if p.quarantined.Load() != 0 && p.quarantinedAt(w.eng.wd.Coarse()) {
		en.stats.slot(w.id).skipped.Add(1)
		return p.spec.OnError, callFailed
	}
	c.cur = p.name()
	L := ps.L
	w.slot.Start(p.spec.Budget)
	L.Push(ps.fns[en.reg])
	L.Push(ps.pkt)
	err := L.PCall(1, 1, nil)
	why := w.slot.End()
	cut := why != watchdog.NotCut
	var ret lua.LValue = lua.LNil
	if err == nil {
		ret = L.Get(-1)
		L.Pop(1)
	}
	if cut {
		// Even a script that caught the interruption with pcall has
		// overrun: the packet gets the failure verdict.
		if why == watchdog.CutMemory {
			return w.fail(en, p, failMemory, "callback %s cut off: the process is near its memory ceiling", nil), callFailed
		}
		if why == watchdog.CutPacket {
			en.stats.slot(w.id).overBudget.Add(1)
			return p.spec.OnError, callOverBudget
		}
		return w.fail(en, p, failTimeout, "callback %s exceeded its budget of "+p.spec.Budget.String()+cutPlace(p, err), nil), callFailed
	}
	if err != nil {
		return w.fail(en, p, failError, "", err), callFailed
	}
	v, ok := verdictOf(ret)
	if !ok {
		return w.fail(en, p, failError, "callback %s returned "+ret.Type().String()+" %s, not a verdict (fw.ACCEPT, fw.DROP, ...)", ret), callFailed
	}
	if p.consecFails.Load() != 0 {
		p.consecFails.Store(0)
		if q := p.quarantined.Load(); q != 0 && p.quarantined.CompareAndSwap(q, 0) {
			w.eng.log.Info("plugin released from quarantine", "plugin", p.name())
		}
	}
	return v, callOK
}

// cutPlace is " (at FILE:LINE)", where the interrupted call was running
// when the watchdog cut it off (errLine), or "". The result is part of a
// format: a '%' in the file name is doubled.
func cutPlace(p *plugin, err error) string {
	line := errLine(p.spec.File, err)
	if line <= 0 {
		return ""
	}
	return strings.ReplaceAll(fmt.Sprintf(" (at %s:%d)", p.spec.File, line), "%", "%%")
}

// errLine is the line of file an error raised in Lua names at its start,
// or 0. An interruption (a budget cut) is raised in the running Lua frame,
// so its error names where the call was; a script that caught the error,
// or a Go function running, leaves no place.
func errLine(file string, err error) int {
	var aerr *lua.ApiError
	if err == nil || !errors.As(err, &aerr) {
		return 0
	}
	s, ok := aerr.Object.(lua.LString)
	if !ok || !strings.HasPrefix(string(s), file+":") {
		return 0
	}
	return lineOf(string(s[:min(len(s), len(file)+32)]), file)
}

// verdictOf reads a callback's return value.
func verdictOf(v lua.LValue) (Verdict, bool) {
	switch x := v.(type) {
	case *lua.LNilType:
		return Accept, true
	case lua.LNumber:
		switch int(x) {
		case luaAccept:
			return Accept, true
		case luaDrop:
			return Drop, true
		case luaStop:
			return Stop, true
		case luaReject:
			return Reject, true
		case luaRepeat:
			return Repeat, true
		}
	case lua.LString:
		if vd, err := ParseVerdict(string(x)); err == nil {
			return vd, true
		}
	case lua.LBool:
		// true reads as "pass", false as drop: handy for predicates.
		if x {
			return Accept, true
		}
		return Drop, true
	}
	return Accept, false
}

// fail counts a failed callback, quarantines the plugin after too many in a
// row, and returns the plugin's on_error verdict. The reason is formatted
// only when a line is logged, and from bounded parts: format's first %s is
// the callback's name, quoted; its second (if any) is arg, a Lua value
// quoted and cut to maxFailureText bytes; an error arg is the whole reason
// (sandbox.ErrorText, cut likewise).
func (w *Worker) fail(en *entry, p *plugin, kind failKind, format string, arg any) Verdict {
	slot := en.stats.slot(w.id)
	switch kind {
	case failTimeout:
		slot.timeouts.Add(1)
	case failMemory:
		slot.memory.Add(1)
	default:
		slot.errors.Add(1)
	}
	now := w.eng.wd.Coarse()
	n := p.consecFails.Add(1)
	var reason string
	if ok, suppressed := p.logLimiter.allow(now); ok {
		reason = failReason(en, format, arg)
		w.eng.log.Warn("callback failed", "plugin", p.name(), "callback", en.name, "hook", w.ctx.pkt.Hook.String(),
			"reason", reason, "on_error", p.spec.OnError.String(), "suppressed", suppressed)
	}
	if n >= int64(p.spec.QuarantineAfter) && reason == "" {
		reason = failReason(en, format, arg)
	}
	w.quarantineAfter(p, n, now, reason)
	return p.spec.OnError
}

// quarantineAfter quarantines p when n, its consecutive failures, reached
// its quarantine_after (callbacks and timers count alike); reason is the
// last failure's.
func (w *Worker) quarantineAfter(p *plugin, n, now int64, reason string) {
	if n < int64(p.spec.QuarantineAfter) {
		return
	}
	q := p.quarantined.Load()
	if !p.quarantinedAt(now) && p.quarantined.CompareAndSwap(q, now+int64(p.spec.QuarantineFor)) {
		w.eng.log.Error("plugin quarantined", "plugin", p.name(), "consecutive_failures", n,
			"for", p.spec.QuarantineFor.String(), "on_error", p.spec.OnError.String(), "last_reason", reason)
	}
}

// failReason formats fail's reason from bounded parts.
func failReason(en *entry, format string, arg any) string {
	name := sandbox.QuoteCut(en.name, MaxNameLen)
	switch a := arg.(type) {
	case error:
		return sandbox.ErrorText(a)
	case lua.LValue:
		var s string
		if str, ok := a.(lua.LString); ok {
			s = string(str) // no copy; Cut copies at most maxFailureText bytes
		} else {
			s = a.String()
		}
		return fmt.Sprintf(format, name, sandbox.QuoteCut(s, maxFailureText))
	}
	return fmt.Sprintf(format, name)
}

// logOverBudget logs, rate-limited, that a packet's budget ran out.
func (w *Worker) logOverBudget(h Hook, d *Decision) {
	if ok, suppressed := w.eng.budgetLog.allow(w.eng.wd.Coarse()); ok {
		w.eng.log.Warn("packet budget ran out: the remaining Lua callbacks were skipped, each giving its plugin's on_error",
			"hook", h.String(), "packet_budget", w.gen.packetBudget.String(), "skipped", d.OverBudget,
			"verdict", d.Verdict.String(), "by", d.By, "suppressed", suppressed)
	}
}

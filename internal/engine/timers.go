package engine

import (
	"context"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/luafw/luafw/internal/sandbox"
	"github.com/luafw/luafw/internal/watchdog"
	lua "github.com/luafw/luafw/lua"
)

// Timers: fw.every(interval, fn) and fw.after(delay, fn).
//
// A timer runs once per plugin, not once per worker: each plugin that sets
// timers at its top level gets one more Lua state, its timer state, kept
// by the engine's timer worker (a Worker that runs no packets). Only that
// state's top-level calls of fw.every and fw.after set timers; the same
// calls in the packet workers' states check their arguments and return a
// handle that does nothing. A timer function may set and cancel timers; a
// packet callback may not (its state is not the timer state): it leaves
// work in state.map for a timer to do. So a timer never runs concurrently
// with itself nor with a packet callback on the same Lua state.
//
// The timer worker runs a timer like a callback: under the plugin's budget
// (its own watchdog slot), the heap watch and the plugin's memory limit
// (its states are measured like the others); a failure is logged (rate
// limited), counted, and counts towards quarantine. A quarantined plugin's
// timers are skipped (counted) until the quarantine ends. A reload that
// replaces the plugin drops its timer state and so its timers; the new
// version's top level sets its own.
//
// Who drives the timer worker: by default a goroutine of the engine,
// started when a loaded plugin first sets a timer, sleeping until the next
// one is due (on the engine's clock). With Options.ManualTimers the owner
// calls RunTimersUntil instead (luafw test and luafw replay, whose clocks
// move only when told).

// Limits of timers.
const (
	// MinTimerInterval is the shortest interval of fw.every and delay of
	// fw.after: a timer cannot keep the timer worker busy.
	MinTimerInterval = 100 * time.Millisecond
	// MaxTimerInterval is the longest.
	MaxTimerInterval = 366 * 24 * time.Hour
	// MaxTimersPerPlugin is how many timers a plugin may have set at once
	// (fw.after timers count until they have run or are cancelled).
	MaxTimersPerPlugin = 64
)

// timer is one fw.every or fw.after in a timer state.
type timer struct {
	fn        *lua.LFunction
	where     string        // file:line of the call that set it
	every     time.Duration // 0: once (fw.after)
	due       int64         // on the engine's clock, Unix nanoseconds
	done      bool          // cancelled, or a fw.after that has run
	runs      uint64
	failures  uint64
	skipped   uint64 // while the plugin was quarantined
	lastError string
}

const timerHandleType = "luafw.timer"

// timerHost runs the timers of an engine: its timer worker and the
// goroutine that drives it.
type timerHost struct {
	e      *Engine
	manual bool

	// mu serializes the timer worker: runs, syncs, Timers().
	mu sync.Mutex
	w  *Worker // made on first need

	// The goroutine: started, its cancel and done, guarded by lifeMu.
	lifeMu  sync.Mutex
	started bool
	closed  bool
	cancel  context.CancelFunc
	done    chan struct{}
	wake    chan struct{}
}

func newTimerHost(e *Engine, manual bool) *timerHost {
	return &timerHost{e: e, manual: manual, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

func fwEvery(L *lua.LState) int { return setTimer(L, "fw.every", true) }
func fwAfter(L *lua.LState) int { return setTimer(L, "fw.after", false) }

// setTimer is fw.every(interval, fn) and fw.after(delay, fn): seconds and
// a function; it returns a handle with :cancel().
func setTimer(L *lua.LState, what string, every bool) int {
	ps := stateOf(L)
	secs := float64(L.CheckNumber(1))
	fn := L.CheckFunction(2)
	if L.GetTop() > 2 {
		L.RaiseError("%s takes 2 arguments (seconds, function), not %d", what, L.GetTop())
	}
	if math.IsNaN(secs) || secs < MinTimerInterval.Seconds() || secs > MaxTimerInterval.Seconds() {
		L.RaiseError("%s: %v seconds is outside %v s .. %v s", what, secs, MinTimerInterval.Seconds(), MaxTimerInterval.Seconds())
	}
	if !ps.loading && !ps.inTimer {
		L.RaiseError("%s works at the plugin's top level and in timer functions, not in a packet callback "+
			"(timers run once per plugin, in its own state: leave the work in state.map for a timer)", what)
	}
	if len(ps.timers) >= MaxTimersPerPlugin {
		L.RaiseError("%s: a plugin has at most %d timers set at once", what, MaxTimersPerPlugin)
	}
	d := time.Duration(secs * float64(time.Second))
	t := &timer{fn: fn, where: where(L)}
	if every {
		t.every = d
	}
	if ps.w != nil && ps.w.timerWorker {
		t.due = ps.e.opts.Clock().UnixNano() + int64(d)
	} else {
		t.done = true // the probe's and the packet workers' copies never run
	}
	ps.timers = append(ps.timers, t)
	ps.p.timersAtLoad.Store(true)
	return pushUD(L, t, timerHandleType)
}

// where is the file:line of the Lua code that called the running Go
// function.
func where(L *lua.LState) string {
	if w := L.Where(1); w != "" {
		return w[:len(w)-1] // "file:line:"
	}
	return "?"
}

// timerMethods are the methods of a timer handle.
var timerMethods = map[string]lua.LGFunction{
	"cancel": timerCancel,
}

// timerCancel is handle:cancel(): the timer does not run again. It works in
// the timer state (top level, timer functions); in a packet callback it
// raises, as setting a timer there does.
func timerCancel(L *lua.LState) int {
	t := checkUD[*timer](L, "timer")
	ps := stateOf(L)
	if !ps.loading && !ps.inTimer {
		L.RaiseError("timer:cancel works at the plugin's top level and in timer functions, not in a packet callback")
	}
	t.done = true
	return 0
}

// openTimers registers the timer handle type in ps's state; fw.every and
// fw.after come with fw (fwlib.go).
func openTimers(ps *pluginState) {
	L := ps.L
	mt := L.NewTypeMetatable(timerHandleType)
	mt.RawSetString("__index", L.SetFuncs(L.NewTable(), timerMethods, ps.self))
	mt.RawSetString("__metatable", lua.LString(sandbox.LockedMeta))
}

// poke starts the goroutine that runs timers on the engine's clock when
// the running set first has timers, or wakes it (a new generation: timer
// states to build or drop).
func (th *timerHost) poke() {
	if th.manual {
		return
	}
	th.lifeMu.Lock()
	defer th.lifeMu.Unlock()
	if th.started {
		select {
		case th.wake <- struct{}{}:
		default:
		}
		return
	}
	if th.closed || !slices.ContainsFunc(th.e.gen.Load().plugins, func(p *plugin) bool { return p.timersAtLoad.Load() }) {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	th.started, th.cancel = true, cancel
	go th.loop(ctx)
}

// loop runs due timers and sleeps until the next one (or a poke).
func (th *timerHost) loop(ctx context.Context) {
	defer close(th.done)
	sleep := time.NewTimer(time.Hour)
	defer sleep.Stop()
	for {
		th.runDue()
		d := time.Hour
		if next, ok := th.next(); ok {
			// The engine's clock may differ from the system clock (an
			// embedder's); measure the wait on the engine's.
			d = max(next.Sub(th.e.opts.Clock()), 0)
		}
		sleep.Reset(d)
		select {
		case <-ctx.Done():
			return
		case <-th.wake:
		case <-sleep.C:
		}
	}
}

// close stops the goroutine and the timer worker.
func (th *timerHost) close() {
	th.lifeMu.Lock()
	started := th.started
	th.closed = true
	th.lifeMu.Unlock()
	if started {
		th.cancel()
		<-th.done
	}
	th.mu.Lock()
	defer th.mu.Unlock()
	if th.w != nil {
		th.w.Close()
		th.w = nil
	}
}

// worker returns the timer worker, in step with the running generation.
// Called with mu.
func (th *timerHost) worker() *Worker {
	if th.w == nil {
		th.w = th.e.NewWorker()
		th.w.timerWorker = true
	}
	if g := th.e.gen.Load(); g != th.w.gen {
		th.w.sync(g)
	}
	return th.w
}

// next is when the next timer is due.
func (th *timerHost) next() (time.Time, bool) {
	th.mu.Lock()
	defer th.mu.Unlock()
	w := th.worker()
	var due int64
	found := false
	for _, ps := range w.ps {
		if ps == nil {
			continue
		}
		for _, t := range ps.timers {
			if !t.done && (!found || t.due < due) {
				due, found = t.due, true
			}
		}
	}
	return time.Unix(0, due), found
}

// runDue runs every timer due at the engine clock's now, each plugin's in
// the order they were set, and returns how many ran (or were skipped while
// quarantined).
func (th *timerHost) runDue() int {
	th.mu.Lock()
	defer th.mu.Unlock()
	w := th.worker()
	if w.chores.Load() != 0 {
		w.doChores()
	}
	now := th.e.opts.Clock().UnixNano()
	n := 0
	for i, ps := range w.ps {
		if ps == nil {
			continue
		}
		// Timers set by these runs wait for the next round.
		for _, t := range ps.timers[:len(ps.timers)] {
			if t.done || t.due > now {
				continue
			}
			w.runTimer(i, ps, t, now)
			n++
			if w.ps[i] != ps {
				break // rebuilt (memory): its timers are gone
			}
		}
		ps.timers = slices.DeleteFunc(ps.timers, func(t *timer) bool { return t.done })
	}
	return n
}

// NextTimer is when the next timer is due, on the engine's clock; false
// when no timer is set.
func (e *Engine) NextTimer() (time.Time, bool) { return e.timers.next() }

// RunDueTimers runs the timers due at the engine clock's now and returns
// how many ran (or were skipped while their plugin was quarantined).
// Owners with Options.ManualTimers call it (or RunTimersUntil).
func (e *Engine) RunDueTimers() int { return e.timers.runDue() }

// RunTimersUntil runs the timers due up to t in the order they fall due,
// moving the engine's clock with set to each one's time before it runs
// and to t at the end (set may be nil for a clock that moves by itself).
// It is how an owner with Options.ManualTimers drives them; it runs on the
// caller's goroutine, never concurrently with another run of timers.
func (e *Engine) RunTimersUntil(t time.Time, set func(time.Time)) int {
	n := 0
	for {
		next, ok := e.timers.next()
		if !ok || next.After(t) {
			break
		}
		if set != nil {
			set(next)
		}
		n += e.timers.runDue()
	}
	if set != nil {
		set(t)
	}
	return n
}

// runTimer runs one timer on the timer worker. Like callLua, without a
// packet.
func (w *Worker) runTimer(i int, ps *pluginState, t *timer, now int64) {
	p := w.gen.plugins[i]
	if t.every > 0 {
		t.due += int64(t.every)
		if t.due <= now { // late by an interval or more: no burst of runs
			t.due = now + int64(t.every)
		}
	} else {
		t.done = true
	}
	if p.quarantined.Load() != 0 && p.quarantinedAt(w.eng.wd.Coarse()) {
		t.skipped++
		return
	}
	t.runs++
	L := ps.L
	ps.inTimer = true
	w.slot.Start(p.spec.Budget)
	L.Push(t.fn)
	err := L.PCall(0, 0, nil)
	why := w.slot.End()
	ps.inTimer = false
	var reason string
	switch {
	case why == watchdog.CutMemory:
		reason = "cut off: the process is near its memory ceiling"
	case why != watchdog.NotCut:
		reason = "exceeded its budget of " + p.spec.Budget.String()
	case err != nil:
		reason = sandbox.ErrorText(err)
	default:
		return
	}
	t.failures++
	t.lastError = reason
	now = w.eng.wd.Coarse()
	n := p.consecFails.Add(1)
	if ok, suppressed := p.logLimiter.allow(now); ok {
		w.eng.log.Warn("timer failed", "plugin", p.name(), "timer", t.where, "reason", reason, "suppressed", suppressed)
	}
	w.quarantineAfter(p, n, now, reason)
}

// TimerInfo is one timer that is set, for `luafw status`.
type TimerInfo struct {
	Plugin    string
	Where     string        // file:line of the fw.every / fw.after call
	Every     time.Duration // 0 for fw.after
	Next      time.Time     // when it is due, on the engine's clock
	Runs      uint64
	Failures  uint64
	Skipped   uint64 // while the plugin was quarantined
	LastError string `json:",omitempty"`
}

// Timers lists the timers that are set, plugin by plugin in load order.
func (e *Engine) Timers() []TimerInfo {
	th := e.timers
	th.mu.Lock()
	defer th.mu.Unlock()
	if th.w == nil {
		return nil
	}
	w := th.worker()
	var out []TimerInfo
	for i, ps := range w.ps {
		if ps == nil {
			continue
		}
		for _, t := range ps.timers {
			if !t.done {
				out = append(out, TimerInfo{Plugin: w.gen.plugins[i].name(), Where: t.where, Every: t.every,
					Next: time.Unix(0, t.due), Runs: t.runs, Failures: t.failures, Skipped: t.skipped, LastError: t.lastError})
			}
		}
	}
	return out
}

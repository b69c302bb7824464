package engine

import (
	"github.com/luafw/luafw/host/stream"

	"slices"
	"sync/atomic"
	"time"
	"unsafe"

	lua "github.com/luafw/luafw/lua"
)

// Per-plugin memory accounting.
//
// What a plugin keeps across calls (its globals, the upvalues of its
// callbacks, its registry) lives in its Lua states, one per worker.
// gopher-lua cannot count its allocations, so the engine estimates a
// state's size by walking the Lua objects it can reach. The walk runs in
// the worker that owns the state, between two packets (gopher-lua is not
// safe for concurrent use), when the background goroutine has asked for it
// (every Options.MemoryCheckInterval); it stops counting once the state is
// over its limit, so it visits at most about limit/16 objects. A state over
// its plugin's limit gets the plugin quarantined and every one of the
// plugin's states rebuilt from the compiled chunk.
//
// The walk runs in slices of at most sliceBudget (the clock is read every
// 128 objects), one per packet at most, and resumes where it stopped: the
// walker keeps a stack of values still to expand (a table with the
// position of its next entry) and the set of objects already counted.
// After a slice of d the worker runs packets only for sliceGap*d before
// the next slice, so a walk takes at most 1/(1+sliceGap) of a busy
// worker's time; between walks, measureShare bounds it to 1%. A worker
// without packets walks nothing, and needs not: no Lua runs in it, so its
// states do not change.
//
// The state changes between slices, so the figure is approximate: what is
// added behind the walk's position (to a table already passed, or a table
// entry already read) is missed until the next walk; what is dropped after
// it was counted is still counted. That is enough for a limit: a state
// that keeps more than its limit holds more than limit bytes of objects,
// and the walk reaches them, slice after slice. A plugin that grows fast
// is caught when the walk has counted limit bytes, as soon as that slice
// ends (not at the end of the walk): the detection time grows from one
// walk to one walk plus the slices its objects take, about
// (1+sliceGap) times the walk's own time, and the packets between them.
// A small state (the hostile tests' limits) is walked in one slice, as
// before. The process ceiling (package watchdog) stays the backstop.

// Defaults of the memory accounting.
const (
	// DefaultPluginMemory is what one Lua state of a plugin may keep
	// across calls when its spec sets no Memory.
	DefaultPluginMemory = 64 << 20
	// DefaultMemoryCheckInterval is how often workers measure their states.
	DefaultMemoryCheckInterval = time.Second
)

// Estimated sizes in bytes of gopher-lua's objects on 64-bit Go, checked
// against the Go heap (within about ±30% for arrays, string-keyed hashes,
// small tables and closures): a value slot is a 16-byte interface and a
// number in it is boxed (8 bytes); arrays grow by doubling; a table's
// hash part is two Go maps and a key list.
const (
	sizeString     = 16 // plus its length
	sizeNumber     = 8
	sizeTable      = 112
	sizeHashTables = 512 // a table's first hash entry makes its maps
	sizeArraySlot  = 24
	sizeHashEntry  = 128
	sizeFunction   = 64
	sizeUpvalue    = 48
	sizeUserData   = 64
	// Strings at least this long are counted once however many values
	// share them; shorter ones once per reference (cheaper than a lookup).
	dedupeMin = 64
	// A walker keeps its set of seen objects for the next walk unless the
	// walk made it larger than this.
	keepSeen = 1 << 16
)

// Bits of Worker.chores: work the worker does between two packets.
const (
	choreMeasure   = 1 << iota // measure the memory of every plugin state
	choreRebuild               // some plugin's states must be rebuilt
	choreTraceDone             // the trace tap detached: release the filter state (trace_worker.go)
	choreWalk                  // a measurement is in progress: walk its next slice
	choreBuilt                 // a state built in the background is ready (build.go)
)

// The slices of the memory walk: at most sliceBudget each (plus up to 128
// objects), and at least sliceGap times a slice's length of packets
// between two.
const (
	sliceBudget = 250 * time.Microsecond
	sliceGap    = 3
)

// pluginCounters are a plugin's memory figures; like callback stats they
// outlive reloads.
type pluginCounters struct {
	overruns atomic.Uint64   // times a state went over the limit
	bytes    atomic.Int64    // the estimate of the state measured last
	stream   stream.Counters // of its stream tables (streamlib.go)
}

// countersFor returns the memory counters of the plugin called name.
func (e *Engine) countersFor(name string) *pluginCounters {
	e.statsMu.Lock()
	defer e.statsMu.Unlock()
	c, ok := e.pluginStats[name]
	if !ok {
		c = &pluginCounters{}
		e.pluginStats[name] = c
	}
	return c
}

// askWorkers sets chore bits on every worker.
func (e *Engine) askWorkers(bits uint32) {
	e.workersMu.Lock()
	defer e.workersMu.Unlock()
	for w := range e.workers {
		w.chores.Or(bits)
	}
}

// measureShare bounds the time a worker spends measuring: after a walk
// whose slices took d, it measures again no sooner than measureShare*d
// after it started (1%).
const measureShare = 100

// doChores runs the work the engine asked of the worker: putting rebuilt
// states in place, rebuilding states whose plugin was reset, and measuring
// states, a slice at a time. Called between packets; the time it takes is
// a housekeeping pause (HousekeepingPauses).
func (w *Worker) doChores() {
	start := time.Now()
	c := w.chores.Swap(0)
	if c&choreTraceDone != 0 && w.tr != nil {
		w.tr.close()
	}
	if c&choreBuilt != 0 {
		w.installBuilds()
	}
	for i, ps := range w.ps {
		if ps == nil {
			continue
		}
		p := w.gen.plugins[i]
		if ps.epoch != p.epoch.Load() {
			w.rebuild(i)
		}
	}
	if c&choreMeasure != 0 && !w.walking && !start.Before(w.measureAfter) {
		w.walking, w.walkI, w.walkPS = true, -1, nil
		w.walkStart, w.walkSpent, w.nextSlice = start, 0, time.Time{}
	}
	if w.walking {
		w.walkSlice(start)
	}
	w.notePause(start)
}

// walkSlice walks the worker's states for one slice, from where the last
// one stopped.
func (w *Worker) walkSlice(start time.Time) {
	if start.Before(w.nextSlice) {
		w.chores.Or(choreWalk)
		return
	}
	deadline := start.Add(sliceBudget)
	for {
		if w.walkPS != nil && (w.walkI >= len(w.ps) || w.ps[w.walkI] != w.walkPS) {
			// Rebuilt since: measure the new state from the start.
			w.mem.finish()
			w.walkPS = nil
			w.walkI--
		}
		if w.walkPS == nil {
			w.walkI++
			for w.walkI < len(w.ps) && w.ps[w.walkI] == nil {
				w.walkI++
			}
			if w.walkI >= len(w.ps) {
				w.walking = false
				w.walkSpent += time.Since(start)
				w.measureAfter = w.walkStart.Add(measureShare * w.walkSpent)
				return
			}
			w.walkPS = w.ps[w.walkI]
			w.mem.begin(w.walkPS, w.gen.plugins[w.walkI].spec.Memory)
		}
		if !w.mem.run(deadline) {
			break
		}
		i, p, n := w.walkI, w.gen.plugins[w.walkI], w.mem.total
		w.mem.finish()
		w.walkPS = nil
		p.counters.bytes.Store(n)
		if n > p.spec.Memory {
			w.memoryOverrun(i, n)
		}
		if time.Now().After(deadline) {
			break
		}
	}
	now := time.Now()
	d := now.Sub(start)
	w.walkSpent += d
	w.nextSlice = now.Add(sliceGap * d)
	w.chores.Or(choreWalk)
}

// endWalk drops a measurement in progress.
func (w *Worker) endWalk() {
	if w.walkPS != nil {
		w.mem.finish()
	}
	w.walking, w.walkPS = false, nil
}

// notePause records a housekeeping pause that began at start.
func (w *Worker) notePause(start time.Time) {
	if d := int64(time.Since(start)); d > w.pauseMax.Load() {
		w.pauseMax.Store(d)
	}
}

// WorkerPause is the longest housekeeping pause of one worker.
type WorkerPause struct {
	Worker int // the worker's id, from 1 in order of NewWorker
	Max    time.Duration
}

// HousekeepingPauses returns, per worker, the longest stretch of
// housekeeping it did between two packets (memory measurement, putting
// rebuilt states in place, a switch of generation) since the last call,
// and starts the next period: a maximum per scrape.
func (e *Engine) HousekeepingPauses() []WorkerPause {
	e.workersMu.Lock()
	defer e.workersMu.Unlock()
	out := make([]WorkerPause, 0, len(e.workers))
	for w := range e.workers {
		out = append(out, WorkerPause{Worker: w.id, Max: time.Duration(w.pauseMax.Swap(0))})
	}
	slices.SortFunc(out, func(a, b WorkerPause) int { return compareInt(a.Worker, b.Worker) })
	return out
}

// memoryOverrun quarantines a plugin whose state in this worker keeps more
// than its limit, and has all of its states rebuilt: this one now (in the
// background for a worker with background builds), the other workers'
// before their next packet.
func (w *Worker) memoryOverrun(i int, n int64) {
	p := w.gen.plugins[i]
	p.counters.overruns.Add(1)
	p.quarantined.Store(w.eng.nanos() + int64(p.spec.QuarantineFor))
	w.eng.log.Error("plugin over its memory limit: quarantined, its Lua states rebuilt", "plugin", p.name(),
		"bytes", n, "limit", p.spec.Memory, "for", p.spec.QuarantineFor.String(), "on_error", p.spec.OnError.String())
	p.epoch.Add(1)
	w.rebuild(i)
	w.eng.askWorkers(choreRebuild)
}

// rebuild replaces the worker's state of plugin i with a fresh one; with
// background builds the old one is closed now and the new one put in place
// when it is ready (build.go).
func (w *Worker) rebuild(i int) {
	p := w.gen.plugins[i]
	w.ps[i].L.Close()
	w.ps[i] = nil
	if w.async {
		w.startBuild(p)
		return
	}
	ps, err := w.eng.newPluginState(p, w)
	if err != nil {
		w.eng.log.Error("plugin failed to restart in worker", "plugin", p.name(), "err", err)
		return
	}
	w.ps[i] = ps
}

// memWalker estimates the memory a Lua state keeps. A worker keeps one
// and reuses its buffers. The walk is resumable: begin starts it, run
// goes on until a deadline, and what is left (a stack of values still to
// expand, each table with its position) stays for the next run. The
// state may change between two runs (the worker runs packets in
// between); see doChores for what the figure then means.
type memWalker struct {
	limit int64
	total int64
	seen  map[unsafe.Pointer]struct{}
	todo  []walkFrame
	steps int // entries and objects visited since begin
}

// walkFrame is a value to expand; for a table, where its entries resume.
type walkFrame struct {
	v      lua.LValue
	ai, ki int         // table: the position of its next entry (LTable.Range)
	n      lua.LNumber // table: its array border, read when first opened
	opened bool
}

// tableChunk is how many entries of a table one step of the walk takes
// before the values they reference are walked (depth first: the stack
// stays about tableChunk times the nesting depth).
const tableChunk = 64

// begin starts a walk of ps with its roots queued.
func (m *memWalker) begin(ps *pluginState, limit int64) {
	if m.seen == nil || len(m.seen) > keepSeen {
		m.seen = make(map[unsafe.Pointer]struct{})
	}
	clear(m.seen)
	m.limit, m.total, m.steps, m.todo = limit, 0, 0, m.todo[:0]
	L := ps.L
	m.add(L.G.Global)
	m.add(L.G.Registry)
	for _, fn := range ps.fns {
		m.add(fn)
	}
	for _, t := range ps.timers {
		m.add(t.fn)
	}
	if ps.flows != nil {
		for _, e := range ps.flows.entries {
			m.add(e.t)
		}
	}
	for i := 1; i <= L.GetTop(); i++ {
		m.add(L.Get(i))
	}
}

// run walks until the walk is done, the total passes the limit (both:
// true) or, checked every 128 steps, the clock passes deadline (false;
// the zero deadline: no deadline).
func (m *memWalker) run(deadline time.Time) bool {
	check := m.steps + 128
	for len(m.todo) > 0 && m.total <= m.limit {
		if m.steps >= check {
			check = m.steps + 128
			if !deadline.IsZero() && time.Now().After(deadline) {
				return false
			}
		}
		f := m.todo[len(m.todo)-1]
		m.todo = m.todo[:len(m.todo)-1]
		m.steps++
		t, ok := f.v.(*lua.LTable)
		if !ok {
			m.expand(f.v)
			continue
		}
		if !f.opened {
			f.opened = true
			f.n = lua.LNumber(t.Len())
			if t.Metatable != nil {
				m.add(t.Metatable)
			}
		}
		at := len(m.todo)
		done := m.table(t, &f)
		if !done {
			// Resume the table after what its chunk referenced.
			m.todo = append(m.todo, walkFrame{})
			copy(m.todo[at+1:], m.todo[at:])
			m.todo[at] = f
		}
	}
	return true
}

// table counts up to tableChunk entries of t from f's position and adds
// their values; it reports whether t has no entries left.
func (m *memWalker) table(t *lua.LTable, f *walkFrame) bool {
	k := 0
	hash := f.ki > 0
	var done bool
	f.ai, f.ki, done = t.Range(f.ai, f.ki, func(key, val lua.LValue) bool {
		if i, ok := key.(lua.LNumber); ok && i >= 1 && i <= f.n {
			m.total += sizeArraySlot
		} else {
			if !hash {
				hash = true
				m.total += sizeHashTables
			}
			m.total += sizeHashEntry
			m.add(key)
		}
		m.add(val)
		k++
		return k < tableChunk && m.total <= m.limit
	})
	m.steps += k
	return done
}

// finish ends a walk and drops its references to the state's objects.
func (m *memWalker) finish() {
	if cap(m.todo) > 4096 {
		m.todo = nil
	} else {
		clear(m.todo[:cap(m.todo)])
		m.todo = m.todo[:0]
	}
	if len(m.seen) > keepSeen {
		m.seen = nil
	} else {
		clear(m.seen)
	}
}

// measure returns the estimated bytes ps keeps, or a figure just over limit
// once the walk passes it: the whole walk at once (the load-time probe,
// tests).
func (m *memWalker) measure(ps *pluginState, limit int64) int64 {
	m.begin(ps, limit)
	m.run(time.Time{})
	m.finish()
	return m.total
}

// add counts v and queues what it refers to.
func (m *memWalker) add(v lua.LValue) {
	var p unsafe.Pointer
	switch x := v.(type) {
	case lua.LString:
		if len(x) < dedupeMin {
			m.total += sizeString + int64(len(x))
			return
		}
		p = unsafe.Pointer(unsafe.StringData(string(x)))
		if m.mark(p) {
			m.total += sizeString + int64(len(x))
		}
		return
	case *lua.LTable:
		p = unsafe.Pointer(x)
		if x == nil || !m.mark(p) {
			return
		}
		m.total += sizeTable
	case *lua.LFunction:
		p = unsafe.Pointer(x)
		if x == nil || !m.mark(p) {
			return
		}
		m.total += sizeFunction + int64(len(x.Upvalues))*sizeUpvalue
	case *lua.LUserData:
		p = unsafe.Pointer(x)
		if x == nil || !m.mark(p) {
			return
		}
		m.total += sizeUserData
	case lua.LNumber:
		m.total += sizeNumber
		return
	default:
		return // booleans, nil: their slot is counted
	}
	m.todo = append(m.todo, walkFrame{v: v})
}

// mark records p as seen and reports whether it was new.
func (m *memWalker) mark(p unsafe.Pointer) bool {
	if _, ok := m.seen[p]; ok {
		return false
	}
	m.seen[p] = struct{}{}
	return true
}

// expand adds the values a function or userdata refers to (tables are
// walked by run, in chunks).
func (m *memWalker) expand(v lua.LValue) {
	switch x := v.(type) {
	case *lua.LFunction:
		if x.Env != nil {
			m.add(x.Env)
		}
		for _, uv := range x.Upvalues {
			if uv != nil {
				m.add(uv.Value())
			}
		}
	case *lua.LUserData:
		if x.Env != nil {
			m.add(x.Env)
		}
		if x.Metatable != nil {
			m.add(x.Metatable)
		}
	}
}

package engine

import (
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
)

// pluginCounters are a plugin's memory figures; like callback stats they
// outlive reloads.
type pluginCounters struct {
	overruns atomic.Uint64 // times a state went over the limit
	bytes    atomic.Int64  // the estimate of the state measured last
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
// that took d, it measures again no sooner than measureShare*d later (1%).
const measureShare = 100

// doChores runs the work the engine asked of the worker: rebuilding states
// whose plugin was reset, and measuring states. Called between packets.
func (w *Worker) doChores() {
	c := w.chores.Swap(0)
	if c&choreTraceDone != 0 && w.tr != nil {
		w.tr.close()
	}
	var start time.Time
	if c&choreMeasure != 0 {
		start = time.Now()
		if start.Before(w.measureAfter) {
			c &^= choreMeasure
		}
	}
	for i, ps := range w.ps {
		if ps == nil {
			continue
		}
		p := w.gen.plugins[i]
		if ps.epoch != p.epoch.Load() {
			w.rebuild(i)
			continue
		}
		if c&choreMeasure == 0 {
			continue
		}
		n := w.mem.measure(ps, p.spec.Memory)
		p.counters.bytes.Store(n)
		if n > p.spec.Memory {
			w.memoryOverrun(i, n)
		}
	}
	if c&choreMeasure != 0 {
		w.measureAfter = start.Add(measureShare * time.Since(start))
	}
}

// memoryOverrun quarantines a plugin whose state in this worker keeps more
// than its limit, and has all of its states rebuilt: this one now, the
// other workers' before their next packet.
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

// rebuild replaces the worker's state of plugin i with a fresh one.
func (w *Worker) rebuild(i int) {
	p := w.gen.plugins[i]
	w.ps[i].L.Close()
	w.ps[i] = nil
	ps, err := w.eng.newPluginState(p, w)
	if err != nil {
		w.eng.log.Error("plugin failed to restart in worker", "plugin", p.name(), "err", err)
		return
	}
	w.ps[i] = ps
}

// memWalker estimates the memory a Lua state keeps. A worker keeps one
// and reuses its buffers.
type memWalker struct {
	limit int64
	total int64
	seen  map[unsafe.Pointer]struct{}
	todo  []lua.LValue
}

// measure returns the estimated bytes ps keeps, or a figure just over limit
// once the walk passes it.
func (m *memWalker) measure(ps *pluginState, limit int64) int64 {
	if m.seen == nil || len(m.seen) > keepSeen {
		m.seen = make(map[unsafe.Pointer]struct{})
	}
	clear(m.seen)
	m.limit, m.total, m.todo = limit, 0, m.todo[:0]
	L := ps.L
	m.add(L.G.Global)
	m.add(L.G.Registry)
	for _, fn := range ps.fns {
		m.add(fn)
	}
	for i := 1; i <= L.GetTop(); i++ {
		m.add(L.Get(i))
	}
	for len(m.todo) > 0 && m.total <= m.limit {
		v := m.todo[len(m.todo)-1]
		m.todo = m.todo[:len(m.todo)-1]
		m.expand(v)
	}
	clear(m.todo[:cap(m.todo)]) // drop references to the state's objects
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
	m.todo = append(m.todo, v)
}

// mark records p as seen and reports whether it was new.
func (m *memWalker) mark(p unsafe.Pointer) bool {
	if _, ok := m.seen[p]; ok {
		return false
	}
	m.seen[p] = struct{}{}
	return true
}

// expand counts the slots of a table, function or userdata and adds the
// values in them.
func (m *memWalker) expand(v lua.LValue) {
	switch x := v.(type) {
	case *lua.LTable:
		if x.Metatable != nil {
			m.add(x.Metatable)
		}
		n := lua.LNumber(x.Len())
		hash := false
		x.ForEach(func(k, val lua.LValue) {
			if m.total > m.limit {
				return
			}
			if i, ok := k.(lua.LNumber); ok && i >= 1 && i <= n {
				m.total += sizeArraySlot
			} else {
				if !hash {
					hash = true
					m.total += sizeHashTables
				}
				m.total += sizeHashEntry
				m.add(k)
			}
			m.add(val)
		})
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

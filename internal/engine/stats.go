package engine

import (
	"github.com/luafw/luafw/host/stream"

	"sort"
	"sync/atomic"
	"time"
)

// latencyBounds are the upper bounds of the callback latency histogram.
var latencyBounds = [...]time.Duration{
	500 * time.Nanosecond, time.Microsecond, 2 * time.Microsecond, 5 * time.Microsecond,
	10 * time.Microsecond, 20 * time.Microsecond, 50 * time.Microsecond, 100 * time.Microsecond,
	250 * time.Microsecond, 500 * time.Microsecond, time.Millisecond, 2 * time.Millisecond,
	5 * time.Millisecond, 10 * time.Millisecond,
}

// LatencyBuckets returns the upper bounds of the callback latency
// histogram (CallbackStats.Buckets has one more, for longer calls).
func LatencyBuckets() []time.Duration { return latencyBounds[:len(latencyBounds):len(latencyBounds)] }

// statSlots spreads a callback's counters over several cache lines so that
// workers on different cores do not contend; workers pick one by id.
const statSlots = 8

// latencySample: one callback call in this many is timed.
const latencySample = 16

type statSlot struct {
	errors   atomic.Uint64
	timeouts atomic.Uint64
	memory   atomic.Uint64 // cut off at the process memory ceiling
	skipped  atomic.Uint64 // quarantined
	// overBudget: not run, or cut off, because the packet's budget ran out
	overBudget atomic.Uint64
	verdicts   [numVerdicts]atomic.Uint64
	latSum     atomic.Uint64
	buckets    [len(latencyBounds) + 1]atomic.Uint64
	_          [64]byte
}

type cbStats struct {
	slots [statSlots]statSlot
}

type statsKey struct {
	plugin, name string
	hook         Hook
	priority     int
}

// statsFor returns the counters of a callback; they outlive reloads.
func (e *Engine) statsFor(plugin, name string, hook Hook, priority int) *cbStats {
	e.statsMu.Lock()
	defer e.statsMu.Unlock()
	k := statsKey{plugin, name, hook, priority}
	s, ok := e.stats[k]
	if !ok {
		s = &cbStats{}
		e.stats[k] = s
	}
	return s
}

func (s *cbStats) slot(worker int) *statSlot { return &s.slots[worker%statSlots] }

// observe records one timed call.
func (s *statSlot) observe(ns int64) {
	s.latSum.Add(uint64(ns))
	i := 0
	for i < len(latencyBounds) && time.Duration(ns) > latencyBounds[i] {
		i++
	}
	s.buckets[i].Add(1)
}

// CallbackStats are the counters of one callback since the engine started.
type CallbackStats struct {
	Plugin   string
	Name     string
	Hook     Hook
	Priority int
	Calls    uint64 // calls, including those that failed or were skipped
	Errors   uint64 // script errors (the packet got on_error)
	Timeouts uint64 // budget overruns (the packet got on_error)
	// Memory counts calls cut off because the process neared its memory
	// ceiling (the packet got on_error).
	Memory  uint64
	Skipped uint64 // calls skipped while the plugin was quarantined
	// OverBudget counts calls not run, or cut off, because the packet's
	// budget (Options.PacketBudget) ran out; the packet got on_error.
	OverBudget uint64
	Verdicts   map[string]uint64
	// Latency histogram of the timed calls (one in 16): their total time,
	// their count, and their count per LatencyBuckets bound plus one for
	// longer (not cumulative).
	Latency time.Duration
	Timed   uint64
	Buckets []uint64
}

// Stats returns every callback's counters, sorted by plugin, name, hook.
func (e *Engine) Stats() []CallbackStats {
	e.statsMu.Lock()
	defer e.statsMu.Unlock()
	out := make([]CallbackStats, 0, len(e.stats))
	for k, s := range e.stats {
		cs := CallbackStats{Plugin: k.plugin, Name: k.name, Hook: k.hook, Priority: k.priority,
			Verdicts: map[string]uint64{}, Buckets: make([]uint64, len(latencyBounds)+1)}
		for i := range s.slots {
			sl := &s.slots[i]
			cs.Errors += sl.errors.Load()
			cs.Timeouts += sl.timeouts.Load()
			cs.Memory += sl.memory.Load()
			cs.Skipped += sl.skipped.Load()
			cs.OverBudget += sl.overBudget.Load()
			cs.Latency += time.Duration(sl.latSum.Load())
			for v := range sl.verdicts {
				n := sl.verdicts[v].Load()
				cs.Verdicts[Verdict(v).String()] += n
				cs.Calls += n
			}
			for b := range sl.buckets {
				n := sl.buckets[b].Load()
				cs.Buckets[b] += n
				cs.Timed += n
			}
		}
		out = append(out, cs)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Plugin != b.Plugin {
			return a.Plugin < b.Plugin
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Hook < b.Hook
	})
	return out
}

// PluginStatus says whether a plugin is quarantined, and what it keeps.
type PluginStatus struct {
	Name                string
	File                string
	Quarantined         bool
	ConsecutiveFailures int64
	// MemoryBytes is the estimated memory of the plugin's Lua state that
	// was measured last (each worker has one), against MemoryLimit.
	MemoryBytes int64
	MemoryLimit int64
	// MemoryOverruns counts the times one of its states went over
	// MemoryLimit (each time the plugin was quarantined and its states
	// rebuilt); it survives reloads.
	MemoryOverruns uint64
	// Stream counts what its stream tables (the Lua stream module) did,
	// in every worker; it survives reloads.
	Stream StreamCounts
}

// StreamCounts are a plugin's stream counters (see package stream's Stats).
type StreamCounts struct {
	Segments, Dups, Ignored, Conflicts, Evicted, Expired uint64
}

// Plugins returns the running plugins' status.
func (e *Engine) Plugins() []PluginStatus {
	g := e.gen.Load()
	now := e.nanos()
	out := make([]PluginStatus, 0, len(g.plugins))
	for _, p := range g.plugins {
		out = append(out, PluginStatus{Name: p.name(), File: p.spec.File, Quarantined: p.quarantinedAt(now),
			ConsecutiveFailures: p.consecFails.Load(), MemoryBytes: p.counters.bytes.Load(),
			MemoryLimit: p.spec.Memory, MemoryOverruns: p.counters.overruns.Load(), Stream: streamCounts(&p.counters.stream)})
	}
	return out
}

func streamCounts(c *stream.Counters) StreamCounts {
	return StreamCounts{Segments: c.Segments.Load(), Dups: c.Dups.Load(), Ignored: c.Ignored.Load(),
		Conflicts: c.Conflicts.Load(), Evicted: c.Evicted.Load(), Expired: c.Expired.Load()}
}

package host

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"time"
)

// The process ceiling.
//
// A single callback can allocate faster than any per-call check: `s = s ..
// s` doubles a string in one VM instruction, which no hook sees. So the
// watchdog also watches the Go heap (runtime/metrics, about a microsecond
// a read, every heapCheckInterval) and, once live data passes cutFraction
// of the ceiling, cuts off every running Lua call as if its budget had run
// out (counted as a memory failure: the packet gets its plugin's on_error)
// and asks for a garbage collection. The instruction that allocates still
// completes, so the ceiling holds as long as the heap passes the cut line
// while the allocating call has room left: a doubling string crosses 3/4
// of the ceiling one step before it would cross the ceiling.

// DefaultMemoryLimit is the process ceiling the daemon and `luafw replay`
// set (debug.SetMemoryLimit) when the configuration names none.
const DefaultMemoryLimit = 512 << 20

const (
	// cutFraction of the ceiling is the live heap at which running calls
	// are cut off.
	cutFraction = 0.75
	// heapCheckInterval is how often the watchdog reads the heap.
	heapCheckInterval = time.Millisecond
)

// heapWatch is the watchdog's view of the Go heap; it belongs to the
// background goroutine.
type heapWatch struct {
	limit   int64 // the ceiling; 0: no watch
	cutAt   int64
	samples [3]metrics.Sample
	next    time.Time
	// confirm is the GC cycle count when the heap was first seen over the
	// cut line; a cut waits for a later cycle's live figure, so that
	// garbage alone never cuts calls. 0: not waiting.
	confirm uint64
	gcBusy  atomic.Bool
	freeOS  bool // the next GC also returns memory to the OS
}

func newHeapWatch(limit int64) *heapWatch {
	if limit <= 0 {
		// The process's own ceiling, if something set one.
		if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
			limit = l
		}
	}
	h := &heapWatch{limit: limit, cutAt: int64(float64(limit) * cutFraction)}
	h.samples[0].Name = "/memory/classes/heap/objects:bytes" // live and not yet freed
	h.samples[1].Name = "/gc/heap/live:bytes"                // live as of the last GC
	h.samples[2].Name = "/gc/cycles/total:gc-cycles"
	return h
}

// check reads the heap when due and reports whether running calls must be
// cut off, with the heap figure that decided it.
func (h *heapWatch) check(now time.Time) (cut bool, heap int64) {
	if h.limit <= 0 || now.Before(h.next) {
		return false, 0
	}
	h.next = now.Add(heapCheckInterval)
	metrics.Read(h.samples[:])
	objects := int64(h.samples[0].Value.Uint64())
	live := int64(h.samples[1].Value.Uint64())
	cycles := h.samples[2].Value.Uint64()
	switch {
	case objects > h.limit:
		// Over the ceiling itself: garbage or not, no time to wait.
		h.confirm = 0
		h.freeOS = true
		h.collect()
		return true, objects
	case objects <= h.cutAt:
		h.confirm = 0
		return false, 0
	case h.confirm == 0:
		h.confirm = cycles + 1
		h.collect()
	case cycles >= h.confirm:
		h.confirm = 0
		if live > h.cutAt {
			h.freeOS = true
			return true, live
		}
	}
	return false, 0
}

// collect starts a garbage collection unless one it started still runs;
// after a cut it also returns the freed memory to the OS.
func (h *heapWatch) collect() {
	if !h.gcBusy.CompareAndSwap(false, true) {
		return
	}
	free := h.freeOS
	h.freeOS = false
	go func() {
		defer h.gcBusy.Store(false)
		if free {
			debug.FreeOSMemory()
		} else {
			runtime.GC()
		}
	}()
}

// memoryCut cuts off every running Lua call for memory and logs it
// (rate-limited) when it cut any.
func (e *Engine) memoryCut(ws []*Worker, heap, now int64) {
	n := 0
	for _, w := range ws {
		b := w.budget.Load()
		if b > 0 && w.budget.CompareAndSwap(b, memoryCut) {
			(*w.cancel.Load())()
			n++
		}
	}
	if n == 0 {
		return
	}
	if ok, suppressed := e.memLog.allow(now); ok {
		e.log.Error("process memory near its ceiling: running Lua calls cut off", "heap", heap,
			"cut_at", e.heap.cutAt, "limit", e.heap.limit, "calls", n, "suppressed", suppressed)
	}
}

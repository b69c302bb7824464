package watchdog

import (
	"context"
	"errors"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"time"

	lua "github.com/luafw/luafw/lua"
)

// The process ceiling.
//
// A single callback can allocate faster than any per-call check: `s = s ..
// s` doubles a string in one VM instruction, which no hook sees. So the
// watchdog also watches the Go heap (runtime/metrics, about a microsecond
// a read, every heapCheckInterval) and, once the heap in use passes the
// cut line, half the ceiling, cuts off every running Lua call as if its
// budget had run out (counted as a memory failure: the packet gets its
// plugin's on_error) and asks for a garbage collection that returns the
// memory to the OS.
//
// Why half: the instruction that allocates still completes (a cut is seen
// between instructions), and a doubling string's last step before the cut
// line can take the heap to twice the line. Worse, a GC that starts while
// such a copy runs stops the world at its end and so freezes the watchdog
// until the copy is over (tens to hundreds of ms); the cut may then land
// only during the next doubling. So fast growth is cut earlier: a heap over
// a quarter of the ceiling that grew by an eighth of it within one to two
// growthWindows. Legitimate traffic rarely allocates that fast (64 MiB in
// ~100 ms for the default ceiling).
//
// Why not wait for a GC to tell live data from garbage: its stop-the-world
// waits for the allocating copy, and by then the next doubling has begun.
// Garbage alone rarely reaches the half line because SetMemoryCeiling gives
// the GC that line as its soft limit: the GC works to stay below it, and
// only live data it cannot free, or allocation faster than it collects,
// crosses it.

// DefaultMemoryLimit is the process ceiling the daemon and `luafw replay`
// set when the configuration names none.
const DefaultMemoryLimit = 512 << 20

const (
	// heapCheckInterval is how often the watchdog reads the heap.
	heapCheckInterval = time.Millisecond
	// growthWindow: the heap is compared with what it was one to two
	// windows ago to see fast growth.
	growthWindow = 64 * time.Millisecond
)

// heapObjects is the runtime metric the watch reads: the heap's objects,
// live and not yet freed.
const heapObjects = "/memory/classes/heap/objects:bytes"

// cutLine is the heap in use at which running calls are cut off.
func cutLine(ceiling int64) int64 { return ceiling / 2 }

// minProcs is the fewest Ps (GOMAXPROCS) with which the watchdog still
// runs while a script copies a huge string: the copy is not preemptible,
// and while a GC marks, its dedicated worker holds another P until the
// copy ends (it must scan the copying goroutine's stack), and a third may
// be busy in the runtime. With two Ps the watchdog would wait for the
// copy, and the next one.
const minProcs = 4

// SetMemoryCeiling prepares the Go runtime of a process whose engines have
// Options.MemoryLimit ceiling: it gives the GC the cut line as its soft
// memory limit, so that garbage stays below it, and raises GOMAXPROCS to
// minProcs on smaller machines, so that the watchdog always has a P.
func SetMemoryCeiling(ceiling int64) {
	if ceiling <= 0 {
		return
	}
	debug.SetMemoryLimit(cutLine(ceiling))
	if runtime.GOMAXPROCS(0) < minProcs {
		runtime.GOMAXPROCS(minProcs)
	}
}

// heapWatch is the heap watchdog's state; it belongs to its goroutine,
// watchHeap.
type heapWatch struct {
	limit   int64 // the ceiling; 0: no watch
	cutAt   int64
	samples [2]metrics.Sample
	done    chan struct{}
	// After a cut, until a GC cycle ends (cycles past cutCycles), only a
	// heap that grew past cutHeap cuts again: the garbage of the calls
	// just cut off must not cut the calls that follow, but a call that
	// allocates again must not get the time of a GC cycle.
	cutCycles uint64
	cutHeap   int64
	gcBusy    atomic.Bool
	checks    atomic.Uint64 // heap readings so far, for tests
	// Two heap samples growthWindow apart, for the fast-growth line.
	older, newer int64
	newerAt      time.Time
}

func newHeapWatch(limit int64) *heapWatch {
	h := &heapWatch{limit: limit, cutAt: cutLine(limit), done: make(chan struct{})}
	h.samples[0].Name = heapObjects
	h.samples[1].Name = "/gc/cycles/total:gc-cycles"
	return h
}

// check reads the heap and reports whether running calls must be cut off,
// with the heap figure that decided it.
func (h *heapWatch) check(now time.Time) (cut bool, heap int64) {
	metrics.Read(h.samples[:])
	heap = int64(h.samples[0].Value.Uint64())
	cycles := h.samples[1].Value.Uint64()
	if h.newerAt.IsZero() {
		h.older, h.newer = heap, heap
	}
	if now.Sub(h.newerAt) >= growthWindow {
		h.older, h.newer, h.newerAt = h.newer, heap, now
	}
	fast := heap > h.limit/4 && heap-min(h.older, h.newer) > h.limit/8
	if !(heap > h.cutAt || fast) || (cycles <= h.cutCycles && heap <= h.cutHeap) {
		return false, 0
	}
	h.cutCycles, h.cutHeap = cycles, heap
	h.collect()
	return true, heap
}

// collect starts a garbage collection unless one it started still runs.
// Not debug.FreeOSMemory: its scavenging runs without preemption, and a P
// busy with it is one the watchdog may need; the runtime's background
// scavenger returns the memory soon enough.
func (h *heapWatch) collect() {
	if !h.gcBusy.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer h.gcBusy.Store(false)
		runtime.GC()
	}()
}

// watchHeap checks the heap every heapCheckInterval until ctx is done.
//
// It sleeps in a system call, not on a runtime timer: while a GC marks and
// a script's copy holds up the end of the marking, idle mark workers take
// every free P and nothing runs the timers; a goroutine back from a system
// call goes on the run queue, which those workers do yield to.
func (d *Watchdog) watchHeap(ctx context.Context) {
	defer close(d.heap.done)
	var ss []*Slot
	for ctx.Err() == nil {
		if d.asleep.Load() {
			// No Lua runs.
			select {
			case <-ctx.Done():
			case <-d.wakeHeap:
			}
			continue
		}
		sleepSyscall(heapCheckInterval)
		d.heap.checks.Add(1)
		cut, heap := d.heap.check(time.Now())
		if !cut {
			continue
		}
		ss = d.slotList(ss)
		d.memoryCut(ss, heap)
	}
}

// HeapChecks is how many times the heap watch has read the heap.
func (d *Watchdog) HeapChecks() uint64 { return d.heap.checks.Load() }

// ErrMemoryCeiling is the cause of a top-level run cut off for memory.
var ErrMemoryCeiling = errors.New("the process is near its memory ceiling")

// LoadContext is the context of a top-level run: it ends after budget, or
// when the heap watch cuts running calls off (cause ErrMemoryCeiling). The
// watchdog stays awake until cancel is called.
func (d *Watchdog) LoadContext(budget time.Duration) (context.Context, context.CancelFunc) {
	return d.LoadContextIn(context.Background(), budget)
}

// LoadContextIn is LoadContext that also ends with parent (a reload or a
// command cancelled by a signal).
func (d *Watchdog) LoadContextIn(parent context.Context, budget time.Duration) (context.Context, context.CancelFunc) {
	tctx, tcancel := context.WithTimeout(parent, budget)
	ctx, cancel := context.WithCancelCause(tctx)
	d.loadsMu.Lock()
	d.loadSeq++
	id := d.loadSeq
	d.loads[id] = cancel
	d.loadsMu.Unlock()
	d.Wake()
	return ctx, func() {
		d.loadsMu.Lock()
		delete(d.loads, id)
		d.loadsMu.Unlock()
		cancel(nil)
		tcancel()
	}
}

// memoryCut cuts off every running Lua call and top-level run for memory
// and tells Options.MemoryCut when it cut any.
func (d *Watchdog) memoryCut(ss []*Slot, heap int64) {
	n := 0
	d.loadsMu.Lock()
	for _, cancel := range d.loads {
		cancel(ErrMemoryCeiling)
		n++
	}
	d.loadsMu.Unlock()
	for _, s := range ss {
		if s.cut(memoryCut) {
			n++
		}
	}
	if n > 0 && d.opts.MemoryCut != nil {
		d.opts.MemoryCut(heap, d.heap.cutAt, d.heap.limit, n)
	}
}

// WatchesHeap reports whether the watchdog has a memory ceiling.
func (d *Watchdog) WatchesHeap() bool { return d.heap.limit > 0 }

// ConcatCheck is a check for lua.LState.SetConcatCheck (patch 3 of package
// lua) for the states of slot s: a `..` result of at least 1 MiB that would
// take the heap past the cut line is refused before the copy begins, as a
// memory cut of the running call. The heap watch cannot stop a copy already
// under way, and one doubling of a large string could otherwise land on top
// of a heap already near the line.
func (s *Slot) ConcatCheck(L *lua.LState, n int) {
	h := s.d.heap
	var smp [1]metrics.Sample
	smp[0].Name = heapObjects
	metrics.Read(smp[:])
	if int64(smp[0].Value.Uint64())+int64(n) <= h.cutAt {
		return
	}
	s.cut(memoryCut)
	L.RaiseError("interrupted: a %d-byte string would take the process past its memory line", n)
}

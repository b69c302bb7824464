package watchdog

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultInterval is how often the watchdog checks running calls against
// their budgets.
const DefaultInterval = 250 * time.Microsecond

const (
	idleTicks  = 40 // ticks without a call before the watchdog sleeps: 10 ms at the default interval
	sweepEvery = time.Second
)

// Options configure a Watchdog.
type Options struct {
	// Interval is the budget tick; default DefaultInterval.
	Interval time.Duration
	// MemoryLimit is the process ceiling in bytes (see heap.go); 0: no
	// heap watch.
	MemoryLimit int64
	// Tick runs on the watchdog goroutine after each tick's budget checks,
	// with the wall clock: for work due every so often while Lua runs.
	Tick func(wall time.Time)
	// Sweep runs on the watchdog goroutine about once a second, awake or
	// asleep.
	Sweep func()
	// MemoryCut is told, on the heap watch's goroutine, when the heap watch
	// cut calls off: the heap that decided it and how many calls and loads
	// it cut.
	MemoryCut func(heap, cutAt, limit int64, calls int)
}

// Watchdog supervises the Lua calls of a set of slots and top-level runs.
// Close it when done.
type Watchdog struct {
	opts  Options
	start time.Time

	// coarse is the monotonic clock (ns since start) and coarseWall the
	// wall clock (Unix ns) as of the last tick: cheap to read on the
	// packet path (reading the real clock costs ~70 ns on VMs).
	coarse     atomic.Int64
	coarseWall atomic.Int64
	asleep     atomic.Bool
	wakeTick   chan struct{}
	wakeHeap   chan struct{}

	slotsMu sync.Mutex
	slots   map[*Slot]struct{}

	// loads are the cancel functions of running top-level runs.
	loadsMu sync.Mutex
	loads   map[uint64]context.CancelCauseFunc
	loadSeq uint64

	heap   *heapWatch
	cancel context.CancelFunc
	done   chan struct{}
}

// New starts a watchdog.
func New(opts Options) *Watchdog {
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	d := &Watchdog{
		opts: opts, start: time.Now(),
		wakeTick: make(chan struct{}, 1), wakeHeap: make(chan struct{}, 1),
		slots: map[*Slot]struct{}{}, loads: map[uint64]context.CancelCauseFunc{},
		heap: newHeapWatch(opts.MemoryLimit), done: make(chan struct{}),
	}
	d.tickClocks()
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	go d.run(ctx)
	if opts.MemoryLimit > 0 {
		go d.watchHeap(ctx)
	} else {
		close(d.heap.done)
	}
	return d
}

// Close stops the watchdog's goroutines and waits for them.
func (d *Watchdog) Close() {
	d.cancel()
	<-d.done
	<-d.heap.done
}

// Nanos is the watchdog's monotonic clock: ns since New, read now.
func (d *Watchdog) Nanos() int64 { return int64(time.Since(d.start)) }

// Coarse is Nanos as of the last tick (or of the wake-up after a sleep):
// one atomic load.
func (d *Watchdog) Coarse() int64 { return d.coarse.Load() }

// WallClock is the wall clock as of the last tick, or the system's while
// the watchdog sleeps.
func (d *Watchdog) WallClock() time.Time {
	if d.asleep.Load() {
		return time.Now()
	}
	return time.Unix(0, d.coarseWall.Load())
}

// Asleep reports whether the watchdog sleeps (no Lua runs).
func (d *Watchdog) Asleep() bool { return d.asleep.Load() }

// Wake ends the watchdog's sleep, if it sleeps; the caller is about to run
// Lua or read the coarse clocks. One atomic load when it is awake.
func (d *Watchdog) Wake() {
	if !d.asleep.Load() || !d.asleep.CompareAndSwap(true, false) {
		return
	}
	d.tickClocks()
	signal(d.wakeTick)
	signal(d.wakeHeap)
}

func (d *Watchdog) tickClocks() {
	d.coarse.Store(d.Nanos())
	d.coarseWall.Store(time.Now().UnixNano())
}

// signal sends a wake-up on c unless one is pending.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// slotList returns the registered slots in ss's storage.
func (d *Watchdog) slotList(ss []*Slot) []*Slot {
	d.slotsMu.Lock()
	defer d.slotsMu.Unlock()
	ss = ss[:0]
	for s := range d.slots {
		ss = append(ss, s)
	}
	return ss
}

// run is the watchdog goroutine: it checks every slot each tick, runs the
// Tick and Sweep hooks, and sleeps while idle.
func (d *Watchdog) run(ctx context.Context) {
	defer close(d.done)
	tick := time.NewTicker(d.opts.Interval)
	defer tick.Stop()
	lastSweep := time.Now()
	sweep := func() {
		if d.opts.Sweep != nil {
			d.opts.Sweep()
		}
		lastSweep = time.Now()
	}
	var ss []*Slot
	idle := 0 // ticks in a row without a call
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		d.tickClocks()
		now := d.coarse.Load()
		ss = d.slotList(ss)
		idle++
		for _, s := range ss {
			if s.check(now) {
				idle = 0
			}
		}
		wall := time.Now()
		if d.opts.Tick != nil {
			d.opts.Tick(wall)
		}
		if wall.Sub(lastSweep) > sweepEvery {
			sweep()
		}
		if idle >= idleTicks && d.trySleep(ss) {
			tick.Stop()
			if !d.sleep(ctx, sweep) {
				return
			}
			tick.Reset(d.opts.Interval)
			idle = 0
		}
	}
}

// trySleep sets asleep unless a call or a load started meanwhile; it
// reports whether the watchdog may sleep.
func (d *Watchdog) trySleep(ss []*Slot) bool {
	d.asleep.Store(true)
	busy := false
	for _, s := range ss {
		if s.running() {
			busy = true
		}
	}
	d.loadsMu.Lock()
	if len(d.loads) > 0 {
		busy = true
	}
	d.loadsMu.Unlock()
	if !busy {
		return true
	}
	if d.asleep.CompareAndSwap(true, false) {
		// The heap watch may have seen the flag meanwhile and gone to
		// wait: wake it, or it would sleep through the calls to come.
		signal(d.wakeHeap)
	} else {
		// A Start woke us already: take its wake-up.
		<-d.wakeTick
	}
	return false
}

// sleep waits for Wake, sweeping every sweepEvery; it returns false when
// ctx ends first.
func (d *Watchdog) sleep(ctx context.Context, sweep func()) bool {
	t := time.NewTimer(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-d.wakeTick:
			return true
		case <-t.C:
			sweep()
			t.Reset(sweepEvery)
		}
	}
}

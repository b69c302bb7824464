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

// PollEvery is how many VM instructions a call runs between two Polls
// (about 20-60 µs of Lua): the documented slack of a budget is one poll
// period beyond the budget, plus the longest single step.
const PollEvery = 2048

const (
	// armAfter: a call that has polled for this long wakes the watchdog,
	// so that the heap watch and the budget backstop run while it does.
	armAfter = int64(100 * time.Microsecond)
	// probeCalls, wakeRate: while the watchdog sleeps, a slot reads the
	// clock every probeCalls calls and wakes it when they came faster than
	// wakeRate calls a second. A tick costs a goroutine wake-up (about
	// 10-15 µs here); the coarse clock it keeps saves a clock read (70-200
	// ns) per clock use: ticking pays only well above 100,000 calls/s.
	probeCalls = 256
	wakeRate   = 200_000
	// sleepTicks: the watchdog sleeps once the calls of the last sleepTicks
	// ticks came slower than half wakeRate and no call runs long.
	sleepTicks = 8
	sweepEvery = time.Second
	// backstop: while the watchdog sleeps it still looks at the slots this
	// often, for a call that runs long without polling (a Go function of
	// the embedding program): such a call is cut at most one backstop
	// period after its budget. Measured at 200 evenly spaced packets a
	// second (one trivial plugin, against the batched reader): a 20 ms
	// backstop cost 1.54x the reader's CPU per packet, 200 ms 1.00x; a
	// wake-up costs far more than its few microseconds of work (timers and
	// idle Ps of the Go scheduler). 100 ms is the compromise.
	backstop = 100 * time.Millisecond
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

// Coarse is Nanos as of the last tick while the watchdog ticks (one atomic
// load), and Nanos while it sleeps.
func (d *Watchdog) Coarse() int64 {
	if d.asleep.Load() {
		return d.Nanos()
	}
	return d.coarse.Load()
}

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

// run is the watchdog goroutine: while it ticks it checks every slot, keeps
// the coarse clocks and runs the Tick hook; it sleeps while calls are
// short and slower than wakeRate, waking every sweepEvery for Sweep and
// Tick.
func (d *Watchdog) run(ctx context.Context) {
	defer close(d.done)
	tick := time.NewTicker(d.opts.Interval)
	defer tick.Stop()
	lastSweep := time.Now()
	sweep := func(wall time.Time) {
		if d.opts.Sweep != nil {
			d.opts.Sweep()
		}
		lastSweep = wall
	}
	var ss []*Slot
	var window [sleepTicks]uint64 // calls per tick, the last sleepTicks ticks
	var sum uint64
	quiet := uint64(sleepTicks) * uint64(float64(wakeRate/2)*d.opts.Interval.Seconds())
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		d.tickClocks()
		now := d.coarse.Load()
		ss = d.slotList(ss)
		long := false
		var calls uint64
		for _, s := range ss {
			if s.check(now) {
				long = true
			}
			calls += s.calls()
		}
		sum += calls - window[i%sleepTicks]
		window[i%sleepTicks] = calls
		wall := time.Now()
		if d.opts.Tick != nil {
			d.opts.Tick(wall)
		}
		if wall.Sub(lastSweep) > sweepEvery {
			sweep(wall)
		}
		if i >= sleepTicks && !long && sum < quiet && d.trySleep(ss) {
			tick.Stop()
			if !d.sleep(ctx, sweep) {
				return
			}
			tick.Reset(d.opts.Interval)
			window, sum, i = [sleepTicks]uint64{}, 0, 0
			for _, s := range ss {
				s.calls() // not the calls made while asleep
			}
		}
	}
}

// trySleep sets asleep unless a call or a load started meanwhile; it
// reports whether the watchdog may sleep.
func (d *Watchdog) trySleep(ss []*Slot) bool {
	d.asleep.Store(true)
	busy := false
	for _, s := range ss {
		if s.long.Load() {
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
		// A Poll or a load woke us already: take its wake-up.
		<-d.wakeTick
	}
	return false
}

// sleep waits for Wake, looking at the slots every backstop and running
// Sweep and Tick every sweepEvery; it returns false when ctx ends first.
func (d *Watchdog) sleep(ctx context.Context, sweep func(time.Time)) bool {
	t := time.NewTicker(backstop)
	defer t.Stop()
	var ss []*Slot
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-d.wakeTick:
			return true
		case wall := <-t.C:
			now := d.Nanos()
			ss = d.slotList(ss)
			for _, s := range ss {
				s.check(now)
			}
			if wall.Sub(last) >= sweepEvery {
				last = wall
				sweep(wall)
				if d.opts.Tick != nil {
					d.opts.Tick(wall)
				}
			}
		}
	}
}

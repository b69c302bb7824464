package engine

import (
	"time"
)

// The engine's background goroutines sleep while no Lua runs. The
// watchdog ticks every WatchdogInterval (250 µs) and the heap watch every
// heapCheckInterval (1 ms): about 5,000 wake-ups a second, which cost an
// idle daemon about 17% of a core (measured in the bench lab), taken from
// whatever else the machine does. After idleTicks ticks in which no worker
// ran or started a Lua call (Worker.checkBudget), and if no top-level run
// is loading, the watchdog sets asleep and both goroutines wait; the next
// packet (RunRange), Lua call or load wakes them.
//
// Why no call can run unwatched: a worker stores its call's budget and then
// reads asleep; the watchdog stores asleep and then reads every budget
// (sequentially consistent atomics, so one of the two sees the other), and
// a load registers under loadsMu and then reads asleep while the watchdog
// sets asleep before it counts the loads under the same lock.
//
// While asleep, the watchdog still wakes every idleSweep to sweep expired
// state, and the clocks scripts and state read (coarse, coarseWall) are
// read from the system clock instead of the last tick.

const (
	idleTicks = 40 // 10 ms at the default interval
	idleSweep = time.Second
)

// wake ends the background goroutines' sleep, if they sleep; the caller
// is about to run Lua or read the coarse clocks. One atomic load when
// they are awake.
func (e *Engine) wake() {
	if !e.asleep.Load() || !e.asleep.CompareAndSwap(true, false) {
		return
	}
	e.tickClocks()
	e.signal(e.wakeWatchdog)
	e.signal(e.wakeHeap)
}

// tickClocks sets the coarse clocks to now.
func (e *Engine) tickClocks() {
	e.coarse.Store(e.nanos())
	e.coarseWall.Store(time.Now().UnixNano())
}

// wallClock is the state store's clock: the last tick's, or the system's
// while the watchdog sleeps.
func (e *Engine) wallClock() time.Time {
	if e.asleep.Load() {
		return time.Now()
	}
	return time.Unix(0, e.coarseWall.Load())
}

// trySleep sets asleep unless a call or a load started meanwhile; it
// reports whether the watchdog may sleep.
func (e *Engine) trySleep(ws []*Worker) bool {
	e.asleep.Store(true)
	busy := false
	for _, w := range ws {
		if w.budget.Load() != 0 {
			busy = true
		}
	}
	e.loadsMu.Lock()
	if len(e.loads) > 0 {
		busy = true
	}
	e.loadsMu.Unlock()
	if !busy {
		return true
	}
	if e.asleep.CompareAndSwap(true, false) {
		// The heap watch may have seen the flag meanwhile and gone to
		// wait: wake it, or it would sleep through the calls to come.
		e.signal(e.wakeHeap)
	} else {
		// A worker woke us already: take its wake-up.
		<-e.wakeWatchdog
	}
	return false
}

// signal sends a wake-up on c unless one is pending.
func (e *Engine) signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

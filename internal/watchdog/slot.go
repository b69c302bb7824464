package watchdog

import (
	"runtime"
	"sync/atomic"
	"time"
)

// A slot's budget holds one of these once a call was cut off.
const (
	interrupted = -1 // for its time budget
	memoryCut   = -2 // for the process's memory ceiling
)

// Cut says whether and why a call was cut off.
type Cut int8

const (
	// NotCut: the call ended by itself.
	NotCut Cut = iota
	// CutBudget: the call ran for its whole time budget.
	CutBudget
	// CutMemory: the process neared its memory ceiling while it ran.
	CutMemory
)

// Slot is one worker's Lua calls as the watchdog sees them. Start and End
// belong to the worker's goroutine; the watchdog reads the rest.
type Slot struct {
	d      *Watchdog
	seq    atomic.Uint64
	budget atomic.Int64 // ns; 0 when idle; interrupted or memoryCut once cut
	intr   *atomic.Int32

	// The watchdog goroutine's own: the call it saw last and when it first
	// saw it, and the sequence number at the last tick.
	wdSeq, wdLastSeq uint64
	wdFirst          int64
}

// NewSlot registers a slot; Close unregisters it.
func (d *Watchdog) NewSlot() *Slot {
	s := &Slot{d: d, intr: new(atomic.Int32)}
	d.slotsMu.Lock()
	d.slots[s] = struct{}{}
	d.slotsMu.Unlock()
	return s
}

// Close unregisters the slot.
func (s *Slot) Close() {
	s.d.slotsMu.Lock()
	delete(s.d.slots, s)
	s.d.slotsMu.Unlock()
}

// Interrupt is the flag the slot's Lua states look at between instructions
// (lua.LState.SetInterrupt).
func (s *Slot) Interrupt() *atomic.Int32 { return s.intr }

// Start publishes a call about to run with the given budget.
func (s *Slot) Start(budget time.Duration) {
	s.seq.Store(s.seq.Load() + 1)
	s.budget.Store(int64(budget))
	// After the store: a watchdog going to sleep sees the budget, or this
	// sees it asleep.
	s.d.Wake()
}

// End takes back the running call's budget and reports whether it was cut.
// After a cut it readies the slot's states for the next call.
func (s *Slot) End() Cut {
	switch s.budget.Swap(0) {
	case interrupted:
		s.clearInterrupt()
		return CutBudget
	case memoryCut:
		s.clearInterrupt()
		return CutMemory
	}
	return NotCut
}

// clearInterrupt waits for the cutter's store of the flag (it sets it right
// after it won the budget), so that it cannot land on the next call, and
// clears it.
func (s *Slot) clearInterrupt() {
	for s.intr.Load() == 0 {
		runtime.Gosched()
	}
	s.intr.Store(0)
}

// cut cuts the running call off with why (interrupted or memoryCut) unless
// it ended or was cut already; it reports whether it did.
func (s *Slot) cut(why int64) bool {
	b := s.budget.Load()
	if b <= 0 || !s.budget.CompareAndSwap(b, why) {
		return false
	}
	s.intr.Store(1)
	return true
}

// check is the watchdog's look at the slot at time now: it cuts off a call
// it has seen running for its whole budget. It reports whether the slot
// runs a call or started one since the last tick.
func (s *Slot) check(now int64) (busy bool) {
	b := s.budget.Load()
	seq := s.seq.Load() // after the budget: at least the running call's
	busy = b != 0 || seq != s.wdLastSeq
	s.wdLastSeq = seq
	if b <= 0 {
		s.wdSeq = 0
		return busy
	}
	if seq != s.wdSeq {
		s.wdSeq, s.wdFirst = seq, now
		return true
	}
	if now-s.wdFirst >= b && s.budget.CompareAndSwap(b, interrupted) {
		s.intr.Store(1)
	}
	return true
}

// running reports whether the slot runs a call.
func (s *Slot) running() bool { return s.budget.Load() != 0 }

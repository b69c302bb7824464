package watchdog

import (
	"runtime"
	"sync/atomic"
	"time"

	lua "github.com/luafw/luafw/lua"
)

// A slot's budget holds one of these once a call was cut off.
const (
	interrupted = -1 // for its time budget
	memoryCut   = -2 // for the process's memory ceiling
	packetCut   = -3 // for its packet's budget
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
	// CutPacket: the calls of its packet together ran for the packet's
	// budget (StartPacket).
	CutPacket
)

// Slot is one worker's Lua calls as the watchdog sees them. Start and End
// belong to the worker's goroutine; the watchdog reads the rest.
type Slot struct {
	d      *Watchdog
	seq    atomic.Uint64
	budget atomic.Int64 // ns; 0 when idle; interrupted or memoryCut once cut
	intr   *atomic.Int32

	// long is set by the running call's Poll once it has run for armAfter
	// and cleared by End: while a slot is long the watchdog stays awake.
	long atomic.Bool

	// The watchdog goroutine's own: the call it saw last and when it first
	// saw it, and the sequence number at the last tick.
	wdSeq, wdLastSeq uint64
	wdFirst          int64

	// The worker goroutine's own: the call Poll saw last and when it first
	// polled; the calls started since the rate probe began, and when.
	pollSeq    uint64
	pollFirst  int64
	probeN     int
	probeStart int64

	// The packet the worker runs (StartPacket), also its own: the budget
	// its calls share, when Poll first saw one of them, and whether the
	// budget has run out.
	pktSeq, pktPolled uint64
	pktBudget         int64
	pktFirst          int64
	pktOver           bool
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

// Start publishes a call about to run with the given budget. It does not
// wake a sleeping watchdog: the call's own Polls supervise it, and wake the
// watchdog if it runs long. Every probeCalls calls while the watchdog
// sleeps it reads the clock once, and wakes the watchdog when the calls
// come faster than wakeRate: at such rates its ticks cost less than the
// clock reads they save.
func (s *Slot) Start(budget time.Duration) {
	s.seq.Store(s.seq.Load() + 1)
	s.budget.Store(int64(budget))
	if !s.d.asleep.Load() {
		s.probeN = 0
		return
	}
	if s.probeN++; s.probeN == 1 {
		s.probeStart = s.d.Nanos()
	} else if s.probeN >= probeCalls {
		if s.d.Nanos()-s.probeStart < probeCalls*int64(time.Second)/wakeRate {
			s.d.Wake()
		}
		s.probeN = 0
	}
}

// StartPacket begins a packet whose Lua calls share budget (0: no packet
// budget): the calls' polls measure it from the first poll of any of them,
// like a call's own budget, and cut the call that runs it out.
func (s *Slot) StartPacket(budget time.Duration) {
	s.pktSeq++
	s.pktBudget, s.pktOver = int64(budget), false
}

// PacketOver reports whether the packet's budget has run out: its
// remaining calls are not to be made.
func (s *Slot) PacketOver() bool { return s.pktOver }

// Poll is the running call's look at its own budget, made on the worker's
// goroutine every PollEvery VM instructions and every 1024 steps of a long
// builtin (lua.LState.SetPoll and Poll): the first poll of a call notes the
// time, a later one cuts the call once that is its budget ago, and wakes
// the watchdog (budget backstop and heap watch) once the call has run for
// armAfter. The packet's budget (StartPacket) is measured the same way,
// across its calls. A call that never polls costs no clock read.
func (s *Slot) Poll(*lua.LState) {
	b := s.budget.Load()
	if b <= 0 {
		return
	}
	now := s.d.Nanos()
	if seq := s.seq.Load(); seq != s.pollSeq {
		s.pollSeq, s.pollFirst = seq, now
	} else {
		if now-s.pollFirst >= armAfter && !s.long.Load() {
			s.long.Store(true)
			s.d.Wake()
		}
		if now-s.pollFirst >= b {
			s.cut(interrupted)
			return
		}
	}
	if s.pktBudget > 0 {
		if s.pktPolled != s.pktSeq {
			s.pktPolled, s.pktFirst = s.pktSeq, now
		} else if now-s.pktFirst >= s.pktBudget {
			s.pktOver = true
			s.cut(packetCut)
		}
	}
}

// End takes back the running call's budget and reports whether it was cut.
// After a cut it readies the slot's states for the next call.
func (s *Slot) End() Cut {
	if s.long.Load() {
		s.long.Store(false)
	}
	switch s.budget.Swap(0) {
	case interrupted:
		s.clearInterrupt()
		return CutBudget
	case memoryCut:
		s.clearInterrupt()
		return CutMemory
	case packetCut:
		s.clearInterrupt()
		return CutPacket
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

// cut cuts the running call off with why (interrupted, memoryCut or
// packetCut) unless it ended or was cut already; it reports whether it did.
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
// runs a long call (one that polled for armAfter).
func (s *Slot) check(now int64) (long bool) {
	b := s.budget.Load()
	seq := s.seq.Load() // after the budget: at least the running call's
	if b <= 0 {
		s.wdSeq = 0
		return false
	}
	if seq != s.wdSeq {
		s.wdSeq, s.wdFirst = seq, now
	} else if now-s.wdFirst >= b && s.budget.CompareAndSwap(b, interrupted) {
		s.intr.Store(1)
	}
	return s.long.Load()
}

// calls returns how many calls the slot started since the last tick, and
// notes the count for the next one. Called by the watchdog goroutine.
func (s *Slot) calls() uint64 {
	seq := s.seq.Load()
	n := seq - s.wdLastSeq
	s.wdLastSeq = seq
	return n
}

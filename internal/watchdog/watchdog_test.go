package watchdog

import (
	"context"
	"testing"
	"time"
)

// runUntilCut polls like a running call until the slot's interrupt flag is
// set, and reports how long that took.
func runUntilCut(t *testing.T, s *Slot, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for s.Interrupt().Load() == 0 {
		if time.Since(start) > within {
			t.Fatalf("no cut within %v", within)
		}
		s.Poll(nil)
		time.Sleep(20 * time.Microsecond)
	}
	return time.Since(start)
}

// A call that runs past its budget is cut by its own polls, whether the
// watchdog sleeps or not; End says so and clears the flag, and the next
// call is not cut by a late store.
func TestBudgetCut(t *testing.T) {
	d := New(Options{})
	defer d.Close()
	s := d.NewSlot()
	defer s.Close()
	for i := 0; i < 5; i++ {
		s.Start(2 * time.Millisecond)
		runUntilCut(t, s, 5*time.Second)
		if got := s.End(); got != CutBudget {
			t.Fatalf("round %d: End = %v, want CutBudget", i, got)
		}
		if s.Interrupt().Load() != 0 {
			t.Fatalf("round %d: the flag is still set after End", i)
		}
		s.Start(time.Hour)
		s.Poll(nil)
		if got := s.End(); got != NotCut {
			t.Fatalf("round %d: a short call after a cut: End = %v", i, got)
		}
	}
}

// The heap watch's cut goes through the same compare-and-swap: a call cut
// for memory reports CutMemory, an idle slot is left alone.
func TestMemoryCut(t *testing.T) {
	var calls int
	d := New(Options{MemoryCut: func(_, _, _ int64, n int) { calls = n }})
	defer d.Close()
	busy, idle := d.NewSlot(), d.NewSlot()
	busy.Start(time.Hour)
	d.memoryCut([]*Slot{busy, idle}, 1)
	if got := busy.End(); got != CutMemory {
		t.Fatalf("End = %v, want CutMemory", got)
	}
	if calls != 1 {
		t.Fatalf("MemoryCut told of %d calls, want 1", calls)
	}
	if idle.Interrupt().Load() != 0 {
		t.Fatal("an idle slot was interrupted")
	}
}

// The watchdog sleeps while calls are short and slow, a call that runs
// long wakes it (and is cut at its budget), and so does a high call rate.
func TestSleepAndWake(t *testing.T) {
	d := New(Options{})
	defer d.Close()
	s := d.NewSlot()
	defer s.Close()
	waitAsleep := func() {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !d.Asleep() {
			if time.Now().After(deadline) {
				t.Fatal("the watchdog did not sleep while idle")
			}
			time.Sleep(time.Millisecond)
		}
	}
	for i := 0; i < 3; i++ {
		waitAsleep()
		// Short calls at a low rate leave it asleep, and the coarse clock
		// reads the real one meanwhile.
		before := d.Coarse()
		for j := 0; j < 20; j++ {
			s.Start(time.Second)
			s.End()
			time.Sleep(100 * time.Microsecond)
		}
		if !d.Asleep() {
			t.Fatal("short, slow calls woke the watchdog")
		}
		if d.Coarse()-before < int64(2*time.Millisecond) {
			t.Fatal("the coarse clock stood still while asleep")
		}
		// A long call wakes it once it has run for armAfter.
		s.Start(5 * time.Millisecond)
		runUntilCut(t, s, 5*time.Second)
		if d.Asleep() {
			t.Fatal("still asleep during a long call")
		}
		if got := s.End(); got != CutBudget {
			t.Fatalf("End = %v, want CutBudget", got)
		}
	}
	// Calls faster than wakeRate wake it.
	waitAsleep()
	for j := 0; j < 4*probeCalls && d.Asleep(); j++ {
		s.Start(time.Second)
		s.End()
	}
	if d.Asleep() {
		t.Fatal("a high call rate did not wake the watchdog")
	}
}

// A load's context is cut for memory with ErrMemoryCeiling as its cause,
// and keeps the watchdog awake until it ends.
func TestLoadContextCut(t *testing.T) {
	d := New(Options{})
	defer d.Close()
	ctx, cancel := d.LoadContext(time.Hour)
	defer cancel()
	time.Sleep(30 * time.Millisecond) // past idleTicks: a load keeps it awake
	if d.Asleep() {
		t.Fatal("asleep during a load")
	}
	d.memoryCut(nil, 1)
	<-ctx.Done()
	if cause := context.Cause(ctx); cause != ErrMemoryCeiling {
		t.Fatalf("cause %v, want ErrMemoryCeiling", cause)
	}
}

// A call that never polls (a Go function that holds the VM) is still cut
// while the watchdog sleeps: the backstop looks at the slots every 100 ms.
func TestBackstopCutsCallsThatDoNotPoll(t *testing.T) {
	d := New(Options{})
	defer d.Close()
	s := d.NewSlot()
	defer s.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !d.Asleep() {
		if time.Now().After(deadline) {
			t.Fatal("the watchdog did not sleep while idle")
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	s.Start(5 * time.Millisecond)
	for s.Interrupt().Load() == 0 {
		if time.Since(start) > 5*time.Second {
			t.Fatal("a call that does not poll was never cut")
		}
		time.Sleep(100 * time.Microsecond)
	}
	if got := s.End(); got != CutBudget {
		t.Fatalf("End = %v, want CutBudget", got)
	}
	t.Logf("cut after %v (budget 5ms, backstop %v)", time.Since(start), backstop)
}

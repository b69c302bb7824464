package watchdog

import (
	"context"
	"testing"
	"time"
)

// waitFlag waits until the slot's interrupt flag is set.
func waitFlag(t *testing.T, s *Slot, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for s.Interrupt().Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no cut within %v", within)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// A call that runs past its budget is cut; End says so and clears the flag,
// and the next call is not cut by a late store.
func TestBudgetCut(t *testing.T) {
	d := New(Options{})
	defer d.Close()
	s := d.NewSlot()
	defer s.Close()
	for i := 0; i < 5; i++ {
		s.Start(2 * time.Millisecond)
		waitFlag(t, s, 5*time.Second)
		if got := s.End(); got != CutBudget {
			t.Fatalf("round %d: End = %v, want CutBudget", i, got)
		}
		if s.Interrupt().Load() != 0 {
			t.Fatalf("round %d: the flag is still set after End", i)
		}
		s.Start(time.Hour)
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

// The watchdog sleeps when no call runs, a call wakes it, and a call started
// while it slept is still cut at its budget.
func TestIdleSleepAndWake(t *testing.T) {
	d := New(Options{})
	defer d.Close()
	s := d.NewSlot()
	defer s.Close()
	for i := 0; i < 3; i++ {
		deadline := time.Now().Add(5 * time.Second)
		for !d.Asleep() {
			if time.Now().After(deadline) {
				t.Fatal("the watchdog did not sleep while idle")
			}
			time.Sleep(time.Millisecond)
		}
		before := d.Coarse()
		time.Sleep(5 * time.Millisecond)
		s.Start(2 * time.Millisecond)
		if d.Asleep() {
			t.Fatal("still asleep after Start")
		}
		if d.Coarse()-before < int64(5*time.Millisecond) {
			t.Fatal("the coarse clock was not set on wake-up")
		}
		waitFlag(t, s, 5*time.Second)
		if got := s.End(); got != CutBudget {
			t.Fatalf("End = %v, want CutBudget", got)
		}
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

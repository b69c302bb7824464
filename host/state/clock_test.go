package state

import (
	"context"
	"testing"
	"time"
)

func TestCoarseClock(t *testing.T) {
	src := newFakeClock()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clock := CoarseClock(ctx, src.Now, time.Millisecond)
	if got := clock(); !got.Equal(src.Now()) {
		t.Fatalf("first reading %v, want %v", got, src.Now())
	}
	src.Advance(time.Hour)
	// The refresh runs on its own; wait for it (no timing assertion: only
	// give up if it never happens).
	deadline := time.Now().Add(10 * time.Second)
	for !clock().Equal(src.Now()) {
		if time.Now().After(deadline) {
			t.Fatalf("clock never caught up: %v, want %v", clock(), src.Now())
		}
		time.Sleep(time.Millisecond)
	}
	if n := testing.AllocsPerRun(100, func() { clock() }); n != 0 {
		t.Errorf("reading the clock allocates %v times", n)
	}
}

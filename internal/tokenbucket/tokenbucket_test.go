package tokenbucket

import (
	"math"
	"testing"
	"time"
)

func TestRefill(t *testing.T) {
	const s = int64(1e9)
	for _, tc := range []struct {
		name        string
		rate, burst float64
		start       Bucket
		now         int64
		want        float64 // tokens after Refill
		wantLast    int64
	}{
		{"one second at 2/s", 2, 10, Bucket{n: 0, last: 0}, s, 2, s},
		{"capped at burst", 2, 3, Bucket{n: 2, last: 0}, 10 * s, 3, 10 * s},
		{"full stays full", 5, 3, Full(3, 0), s, 3, s},
		{"no time passed", 2, 3, Bucket{n: 1, last: s}, s, 1, s},
		{"clock back refills nothing", 2, 3, Bucket{n: 1, last: 5 * s}, 4 * s, 1, 5 * s},
		{"clock back far", 2, 3, Bucket{n: 1, last: math.MaxInt64}, math.MinInt64, 1, math.MaxInt64},
		{"half a token", 2, 3, Bucket{n: 0, last: 0}, s / 4, 0.5, s / 4},
		{"fractional rate", 0.25, 3, Bucket{n: 0, last: 0}, 2 * s, 0.5, 2 * s},
		{"fractional burst", 1, 1.5, Bucket{n: 0, last: 0}, 3 * s, 1.5, 3 * s},
		{"one per hour", 1.0 / 3600, 1, Bucket{n: 0, last: 0}, 1800 * s, 0.5, 1800 * s},
		{"one nanosecond at 1e9/s", 1e9, 5, Bucket{n: 0, last: 7}, 8, 1, 8},
		{"charged below zero", 1, 3, Bucket{n: -2, last: 0}, s, -1, s},
		{"gap over the whole int64 range", 1e9, 5, Bucket{n: 0, last: math.MinInt64}, math.MaxInt64, 5, math.MaxInt64},
		{"huge rate times huge gap", math.MaxFloat64, 5, Bucket{n: 0, last: 0}, math.MaxInt64, 5, math.MaxInt64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.start
			b.Refill(tc.now, tc.rate, tc.burst)
			if b.Tokens() != tc.want || b.last != tc.wantLast {
				t.Errorf("Refill(%d, %v, %v) of %+v = %+v, want %v tokens at %d", tc.now, tc.rate, tc.burst, tc.start, b, tc.want, tc.wantLast)
			}
		})
	}
}

// TestSequence walks one bucket through takes, refills and a clock that
// steps back, as a state bucket family or the event limiter would.
func TestSequence(t *testing.T) {
	const ms = int64(1e6)
	const rate, burst = 10.0, 3.0
	b := Full(burst, 0)
	step := func(now int64, n float64, want bool) {
		t.Helper()
		b.Refill(now, rate, burst)
		if got := b.Take(n); got != want {
			t.Fatalf("at %dms: Take(%v) = %v, want %v (bucket %+v)", now/ms, n, got, want, b)
		}
	}
	step(0, 1, true)
	step(0, 2, true)
	step(0, 1, false) // burst spent
	step(50*ms, 1, false)
	step(100*ms, 1, true) // two half tokens
	step(100*ms, 0.001, false)
	step(20*ms, 0, true) // the clock stepped back: nothing refilled, nothing lost
	step(150*ms, 0.5, true)
	step(150*ms, 0.001, false)
	step(10_000*ms, burst, true) // capped at burst
	if b.IsFull(burst) {
		t.Error("IsFull after taking the burst")
	}
	b.Refill(20_000*ms, rate, burst)
	if !b.IsFull(burst) {
		t.Error("not IsFull after a long idle time")
	}
}

func TestCharge(t *testing.T) {
	b := Full(3, 0)
	b.Charge(2, -5)
	if b.Tokens() != 1 {
		t.Fatalf("Charge(2) of 3 left %v, want 1", b.Tokens())
	}
	b.Charge(100, -5)
	if b.Tokens() != -5 {
		t.Fatalf("Charge(100) with floor -5 left %v, want -5", b.Tokens())
	}
	if b.Take(0.5) {
		t.Fatal("Take from a charged-negative bucket succeeded")
	}
	b.Refill(6e9, 1, 3) // -5 + 6
	if b.Tokens() != 1 || !b.Take(1) {
		t.Fatalf("after 6s at 1/s: %v tokens, want 1 and a take", b.Tokens())
	}
}

func BenchmarkRefillTake(b *testing.B) {
	bk := Full(1e6, 0)
	now := int64(0)
	for b.Loop() {
		now += 1000
		bk.Refill(now, 1e6, 1e6)
		bk.Take(1)
	}
}

func TestEvery(t *testing.T) {
	const s = int64(1e9)
	var e Every
	now := 1000 * s
	if !e.Allow(now, 10*time.Second) {
		t.Fatal("the first event was refused")
	}
	if e.Allow(now+9*s, 10*time.Second) {
		t.Fatal("an event 9 s later was allowed at a 10 s period")
	}
	if !e.Allow(now+10*s, 10*time.Second) {
		t.Fatal("an event a whole period later was refused")
	}
	if e.Allow(now+11*s, 10*time.Second) {
		t.Fatal("the period counts from the last event allowed")
	}
}

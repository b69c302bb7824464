package lab

import (
	"testing"
	"time"
)

// simulatePacing runs paceStep against a simulated clock that advances only
// by the waits it asks for (and a fixed cost per send), as UDPBlast's loop
// would with perfect timers; it returns the size and start time of every
// send until total datagrams are out.
func simulatePacing(total, batch, rate int, burst bool, perSend time.Duration) (sizes []int, at []time.Duration) {
	var now time.Duration
	sent := 0
	for sent < total {
		want := min(batch, total-sent)
		n, wait, _ := paceStep(sent, want, rate, burst, now)
		if n == 0 {
			now += max(wait, time.Nanosecond)
			continue
		}
		sizes, at = append(sizes, n), append(at, now)
		sent += n
		now += perSend
	}
	return sizes, at
}

// TestPaceStepEven: with batches of 1 every datagram goes alone, at its own
// deadline i/rate: evenly spaced, and the achieved rate is the target.
func TestPaceStepEven(t *testing.T) {
	for _, rate := range []int{200, 1000} {
		sizes, at := simulatePacing(rate, 1, rate, false, 10*time.Microsecond)
		if len(sizes) != rate {
			t.Fatalf("rate %d: %d sends for %d datagrams, want one each", rate, len(sizes), rate)
		}
		gap := time.Second / time.Duration(rate)
		for i := 1; i < len(at); i++ {
			if d := at[i] - at[i-1]; d < gap-time.Microsecond || d > gap+time.Microsecond {
				t.Fatalf("rate %d: send %d came %v after the previous one, want %v", rate, i, d, gap)
			}
		}
		if last := at[len(at)-1]; last < time.Second-gap || last > time.Second+time.Microsecond {
			t.Errorf("rate %d: last of %d datagrams at %v, want about 1 s", rate, rate, last)
		}
	}
}

// TestPaceStepBursts: in burst mode every call carries a whole batch, one
// batch every batch/rate; without it the same rate goes out in small sends.
func TestPaceStepBursts(t *testing.T) {
	const rate, batch, total = 15000, 64, 64 * 100
	sizes, at := simulatePacing(total, batch, rate, true, 10*time.Microsecond)
	for i, n := range sizes {
		if n != batch {
			t.Fatalf("send %d carried %d datagrams, want bursts of %d", i, n, batch)
		}
	}
	period := time.Duration(batch) * time.Second / rate
	if d := at[1] - at[0]; d < period-time.Microsecond || d > period+time.Microsecond {
		t.Errorf("bursts %v apart, want %v", d, period)
	}
	spread, _ := simulatePacing(total, batch, rate, false, 10*time.Microsecond)
	if len(spread) < 10*len(sizes) {
		t.Errorf("without Burst: %d sends for %d datagrams, want many small ones", len(spread), total)
	}
}

// TestPaceStepLate: a sender that wakes late sends at once, reports how
// late, and (without Burst) catches up with what is due.
func TestPaceStepLate(t *testing.T) {
	n, wait, late := paceStep(10, 64, 1000, false, 15*time.Millisecond)
	if n != 5 || wait != 0 || late != 0 {
		t.Errorf("15 ms in, 10 sent, 1000/s: got n=%d wait=%v late=%v, want the 5 due now", n, wait, late)
	}
	n, _, late = paceStep(10, 1, 1000, false, 15*time.Millisecond)
	if n != 1 || late != 4*time.Millisecond {
		t.Errorf("batch 1: got n=%d late=%v, want 1 datagram 4ms late", n, late)
	}
	n, wait, _ = paceStep(0, 64, 1000, true, 10*time.Millisecond)
	if n != 0 || wait != 54*time.Millisecond {
		t.Errorf("burst of 64 at 1000/s, 10 ms in: got n=%d wait=%v, want to wait 54ms", n, wait)
	}
}

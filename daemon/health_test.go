package daemon

import (
	"strings"
	"testing"
	"time"
)

func TestReadersStuck(t *testing.T) {
	var rs readers
	t0 := time.Now()
	limit := time.Second
	idle := rs.add("forward@0", []uint16{1000})
	busy := rs.add("input@0", []uint16{1001})
	waits := rs.add("output@0", []uint16{1002, 1003})
	at := func(d time.Duration) time.Time { return t0.Add(d) }

	busy.enter() // enters a burst and never leaves it
	if got := rs.stuck(at(100*time.Millisecond), limit, nil); len(got) != 0 {
		t.Fatalf("fresh readers reported stuck: %v", got)
	}
	// Long idle with empty queues is healthy; a long burst is not.
	got := rs.stuck(at(3*time.Second), limit, map[uint16]uint64{1000: 0})
	if len(got) != 1 || !strings.Contains(got[0], "input@0") || !strings.Contains(got[0], "inside one burst") {
		t.Fatalf("after 3s: %v, want only input@0 inside a burst", got)
	}
	busy.leave()
	if got := rs.stuck(at(3500*time.Millisecond), limit, nil); len(got) != 0 {
		t.Fatalf("after the burst ended: %v", got)
	}

	// Packets waiting once may just have arrived; waiting a whole limit
	// later with no burst in between is stuck.
	w := map[uint16]uint64{1003: 5}
	if got := rs.stuck(at(4*time.Second), limit, w); len(got) != 0 {
		t.Fatalf("packets seen waiting once: %v", got)
	}
	if got := rs.stuck(at(4500*time.Millisecond), limit, w); len(got) != 0 {
		t.Fatalf("waiting for less than the limit: %v", got)
	}
	got = rs.stuck(at(5500*time.Millisecond), limit, w)
	if len(got) != 1 || !strings.Contains(got[0], "output@0") || !strings.Contains(got[0], "5 packets waiting") {
		t.Fatalf("waiting past the limit: %v", got)
	}
	// One burst and it is healthy again.
	waits.enter()
	waits.leave()
	if got := rs.stuck(at(6*time.Second), limit, w); len(got) != 0 {
		t.Fatalf("after a burst: %v", got)
	}
	rs.remove(idle)
	rs.remove(busy)
	rs.remove(waits)
	if len(rs.m) != 0 {
		t.Fatalf("%d readers left after remove", len(rs.m))
	}
}

// BenchmarkHeartbeat is what the watchdog costs a queue reader per burst.
func BenchmarkHeartbeat(b *testing.B) {
	var rs readers
	h := rs.add("forward@0", []uint16{1000})
	burst := func() {
		h.enter()
		defer h.leave()
	}
	for b.Loop() {
		burst()
	}
}

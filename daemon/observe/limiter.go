package observe

import (
	"math"
	"sync/atomic"

	"github.com/luafw/luafw/internal/tokenbucket"
)

// limiter is a lock-free token bucket (internal/tokenbucket): it allows
// rate events per second on average and burst at once. A refused event
// reads one pointer and writes nothing; an allowed one publishes the new
// bucket with one compare-and-swap and a 16-byte allocation, so there are
// no more allocations than allowed events. A nil *limiter allows everything.
type limiter struct {
	rate, burst float64
	b           atomic.Pointer[tokenbucket.Bucket] // never changed in place
}

func newLimiter(rate float64, burst int) *limiter {
	if rate <= 0 {
		return nil
	}
	if burst < 1 {
		burst = max(1, int(math.Ceil(rate)))
	}
	l := &limiter{rate: rate, burst: float64(burst)}
	full := tokenbucket.Full(l.burst, math.MinInt64) // refills to full on first use
	l.b.Store(&full)
	return l
}

// allow reports whether an event at now (unix ns) is within the rate.
func (l *limiter) allow(now int64) bool {
	if l == nil {
		return true
	}
	for {
		old := l.b.Load()
		b := *old
		b.Refill(now, l.rate, l.burst)
		if !b.Take(1) {
			return false
		}
		next := new(tokenbucket.Bucket) // only here: b itself stays on the stack
		*next = b
		if l.b.CompareAndSwap(old, next) {
			return true
		}
	}
}

package observe

import (
	"math"
	"sync/atomic"
)

// limiter is a lock-free rate limiter (the generic cell rate algorithm):
// it allows rate events per second on average and burst at once. A nil
// *limiter allows everything.
type limiter struct {
	interval int64 // ns per event
	tol      int64 // burst * interval
	tat      atomic.Int64
}

func newLimiter(rate float64, burst int) *limiter {
	if rate <= 0 {
		return nil
	}
	iv := int64(math.Max(1, 1e9/rate))
	if burst < 1 {
		burst = max(1, int(math.Ceil(rate)))
	}
	return &limiter{interval: iv, tol: iv * int64(burst)}
}

// allow reports whether an event at now (unix ns) is within the rate.
func (l *limiter) allow(now int64) bool {
	if l == nil {
		return true
	}
	for {
		tat := l.tat.Load()
		next := max(tat, now) + l.interval
		if next-now > l.tol {
			return false
		}
		if l.tat.CompareAndSwap(tat, next) {
			return true
		}
	}
}

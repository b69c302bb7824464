package tokenbucket

import (
	"sync/atomic"
	"time"
)

// Every allows at most one event per period, without a lock: the special
// case of a bucket of one token that refills whole after period, for
// warnings a hot path may raise at any rate ("log this at most every
// 10 s"). The zero value is ready and allows the first event.
type Every struct{ last atomic.Int64 } // unix ns of the last event allowed

// Allow reports whether an event at now (unix ns) may happen, that is
// whether period has passed since the last one allowed, and counts it if
// so. Of events racing for the same slot, one is allowed.
func (e *Every) Allow(now int64, period time.Duration) bool {
	last := e.last.Load()
	return now-last >= int64(period) && e.last.CompareAndSwap(last, now)
}

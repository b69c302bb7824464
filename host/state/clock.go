package state

import (
	"context"
	"sync/atomic"
	"time"
)

// CoarseClock returns a Clock that reads a time stored in memory and
// refreshed from src (time.Now when nil) every resolution, until ctx ends;
// after that it keeps returning the last time read.
//
// Reading it costs a few nanoseconds where src may cost far more (time.Now
// takes about 200 ns in some virtual machines), at the price of being up to
// resolution behind: ample for TTLs and rate limits at millisecond scale.
// The returned time carries no monotonic reading.
func CoarseClock(ctx context.Context, src Clock, resolution time.Duration) Clock {
	if src == nil {
		src = time.Now
	}
	var ns atomic.Int64
	ns.Store(src().UnixNano())
	go func() {
		t := time.NewTicker(resolution)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				ns.Store(src().UnixNano())
			}
		}
	}()
	return func() time.Time { return time.Unix(0, ns.Load()) }
}

package state

import (
	"time"

	"github.com/luafw/luafw/internal/tokenbucket"
)

// The handles below are what the Lua state module needs of a map, a
// counter and a bucket family. The types of this package implement them;
// so do the cluster-wide ones of host/state/cluster, which keep one of
// these as their local copy.

// MapHandle is a string-keyed map of Values with optional expiry.
type MapHandle interface {
	Get(key string) (Value, bool)
	Set(key string, v Value, ttl time.Duration) error
	Incr(key string, delta, init float64, ttl time.Duration) (float64, error)
	Delete(key string)
	Len() int
}

// CounterHandle is a 64-bit counter.
type CounterHandle interface {
	Add(delta int64) int64
	Get() int64
}

// BucketHandle is a family of token buckets, one per key.
type BucketHandle interface {
	TakeN(key string, n float64) bool
}

var (
	_ MapHandle     = (*Map)(nil)
	_ CounterHandle = (*Counter)(nil)
	_ BucketHandle  = (*Bucket)(nil)
)

// Charge takes n tokens from key's bucket whether or not it holds them,
// leaving it at no less than floor (<= 0) tokens; a new key starts full.
// It accounts here for tokens taken elsewhere (another node of a cluster),
// so that this bucket refills only as fast as the whole cluster may spend.
// A family at its key limit ignores charges for new keys.
func (b *Bucket) Charge(key string, n, floor float64) {
	if !(n > 0) {
		return
	}
	now := b.clock().UnixNano()
	sh := &b.shards[shardOf(key)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	t, ok := sh.m[key]
	if ok {
		t.Refill(now, b.rate, b.burst)
	} else {
		if !b.lim.reserve(keyCost(key)) {
			return
		}
		t = tokenbucket.Full(b.burst, now)
	}
	t.Charge(n, floor)
	sh.m[key] = t
}

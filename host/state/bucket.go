package state

import (
	"sync"

	"github.com/luafw/luafw/internal/tokenbucket"
)

// Bucket is a family of token buckets, one per key, all with the same
// rate and burst: a key's bucket holds up to burst tokens and refills at
// rate tokens per second (the formula of internal/tokenbucket). A key
// seen for the first time starts full.
//
// A bucket that has refilled to full is the same as an absent one, so
// Store.Sweep drops those. When the family holds Limits.MaxKeys keys, a new
// key first triggers that cleanup (at most once per second of clock time)
// and is refused (Take reports false) if it frees no room: under a flood
// of new keys the limit is enforced rather than lifted.
type Bucket struct {
	name        string
	rate, burst float64
	clock       Clock
	lim         limiter
	shards      [numShards]bucketShard
}

type bucketShard struct {
	mu sync.Mutex
	m  map[string]tokenbucket.Bucket
	_  [64 - 16]byte // one shard per cache line
}

func newBucket(name string, rate, burst float64, clock Clock, limits Limits) *Bucket {
	b := &Bucket{name: name, rate: rate, burst: burst, clock: clock, lim: newLimiter(limits)}
	for i := range b.shards {
		b.shards[i].m = make(map[string]tokenbucket.Bucket)
	}
	return b
}

// Take takes one token from key's bucket and reports whether there was one.
func (b *Bucket) Take(key string) bool { return b.TakeN(key, 1) }

// keyCost is what a key's bucket counts against Limits.MaxBytes.
func keyCost(key string) int64 { return int64(len(key)) + EntryOverhead }

// TakeN takes n tokens from key's bucket if it holds at least n, and
// reports whether it did. n above the burst never succeeds; n <= 0 always
// does and changes nothing; NaN never does; a key longer than
// Limits.MaxValue never does.
func (b *Bucket) TakeN(key string, n float64) bool {
	switch {
	case !(n <= b.burst), len(key) > b.lim.maxValue: // also NaN
		return false
	case n <= 0:
		return true
	}
	now := b.clock().UnixNano()
	sh := &b.shards[shardOf(key)]
	sh.mu.Lock()
	t, ok := sh.m[key]
	if !ok && !b.lim.reserve(keyCost(key)) {
		// Full. Other shards must not be locked while holding this one,
		// so drop idle keys unlocked and try once more.
		sh.mu.Unlock()
		if !b.evict(now) {
			return false
		}
		sh.mu.Lock()
		if t, ok = sh.m[key]; !ok && !b.lim.reserve(keyCost(key)) {
			sh.mu.Unlock()
			return false
		}
	}
	if ok {
		t.Refill(now, b.rate, b.burst)
	} else {
		t = tokenbucket.Full(b.burst, now)
	}
	took := t.Take(n)
	sh.m[key] = t
	sh.mu.Unlock()
	return took
}

// evict drops idle keys from a full family unless that ran in the last
// evictInterval; it reports whether it scanned.
func (b *Bucket) evict(now int64) bool {
	if !b.lim.mayEvict(now) {
		return false
	}
	b.sweep(now)
	return true
}

// sweep drops keys whose bucket is full at now.
func (b *Bucket) sweep(now int64) {
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.Lock()
		for k, t := range sh.m {
			t.Refill(now, b.rate, b.burst)
			if t.IsFull(b.burst) {
				delete(sh.m, k)
				b.lim.release(keyCost(k))
			}
		}
		sh.mu.Unlock()
	}
}

// Len returns the number of stored keys; buckets that have refilled to
// full count until Sweep drops them.
func (b *Bucket) Len() int { return int(b.lim.count.Load()) }

// Bytes returns what the stored keys count against Limits.MaxBytes.
func (b *Bucket) Bytes() int64 { return b.lim.bytes.Load() }

// Rate returns the refill rate in tokens per second.
func (b *Bucket) Rate() float64 { return b.rate }

// Burst returns the bucket size in tokens.
func (b *Bucket) Burst() float64 { return b.burst }

// Package state owns the state that all Lua workers of one engine share:
// named TTL maps, atomic counters and per-key token buckets, modelled on
// OpenResty's lua_shared_dict.
//
// One Store lives as long as the engine and survives plugin reloads. Every
// type here is safe for concurrent use. Maps and buckets are split into
// shards, each with its own lock, chosen by an FNV-1a hash of the key, so
// workers on different keys rarely contend; reads and updates of existing
// keys do not allocate.
//
// Time comes from the Clock given to NewStore, so tests (and `luafw test`)
// can move it. Where time.Now is slow (about 200 ns in some virtual
// machines), CoarseClock gives a cheap millisecond-resolution clock.
package state

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Clock returns the current time.
type Clock func() time.Time

// DefaultMaxKeys is the key limit of each map and bucket family when
// Limits.MaxKeys is 0.
const DefaultMaxKeys = 1_000_000

// Limits bounds the memory a Store may use.
type Limits struct {
	// MaxKeys is the most keys one map, or one bucket family, holds;
	// DefaultMaxKeys when <= 0.
	MaxKeys int
}

// ErrFull is returned when a new key would exceed Limits.MaxKeys even after
// dropping expired entries.
var ErrFull = errors.New("state: map full")

// ErrNotNumber is returned by Map.Incr when the key holds a value that is
// not a number.
var ErrNotNumber = errors.New("state: value is not a number")

// Store holds the named maps, counters and buckets of one engine.
type Store struct {
	now     Clock
	maxKeys int

	mu       sync.RWMutex
	maps     map[string]*Map
	counters map[string]*Counter
	buckets  map[string]*Bucket
}

// NewStore returns an empty store reading time from now (time.Now when nil).
func NewStore(now Clock, limits Limits) *Store {
	if now == nil {
		now = time.Now
	}
	if limits.MaxKeys <= 0 {
		limits.MaxKeys = DefaultMaxKeys
	}
	return &Store{
		now:      now,
		maxKeys:  limits.MaxKeys,
		maps:     make(map[string]*Map),
		counters: make(map[string]*Counter),
		buckets:  make(map[string]*Bucket),
	}
}

// getOrCreate returns m[name], creating it with mk under the write lock.
func getOrCreate[T any](s *Store, m map[string]*T, name string, mk func() *T) *T {
	s.mu.RLock()
	v, ok := m[name]
	s.mu.RUnlock()
	if ok {
		return v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := m[name]; ok {
		return v
	}
	v = mk()
	m[name] = v
	return v
}

// Map returns the map called name, creating it on first use. Every call
// with the same name returns the same *Map.
func (s *Store) Map(name string) *Map {
	return getOrCreate(s, s.maps, name, func() *Map { return newMap(name, s.now, s.maxKeys) })
}

// Counter returns the counter called name, creating it (at 0) on first use.
func (s *Store) Counter(name string) *Counter {
	return getOrCreate(s, s.counters, name, func() *Counter { return &Counter{} })
}

// Bucket returns the token-bucket family called name, creating it on first
// use. Each key of the family has its own bucket holding up to burst
// tokens, refilled at rate tokens per second. rate must be > 0 and burst
// >= 1, both finite; asking for an existing name with different
// parameters is an error.
func (s *Store) Bucket(name string, rate, burst float64) (*Bucket, error) {
	if !(rate > 0) || !(burst >= 1) || math.IsInf(rate, 0) || math.IsInf(burst, 0) {
		return nil, fmt.Errorf("state: bucket %q: rate %v/s, burst %v: need a finite rate > 0 and burst >= 1", name, rate, burst)
	}
	b := getOrCreate(s, s.buckets, name, func() *Bucket { return newBucket(name, rate, burst, s.now, s.maxKeys) })
	if b.rate != rate || b.burst != burst {
		return nil, fmt.Errorf("state: bucket %q exists with rate %v/s, burst %v; asked for rate %v/s, burst %v", name, b.rate, b.burst, rate, burst)
	}
	return b, nil
}

// Sweep drops expired map entries and buckets that have refilled to full
// (which are the same as absent). The engine calls it periodically.
func (s *Store) Sweep() {
	s.mu.RLock()
	ms := slices.Collect(maps.Values(s.maps))
	bs := slices.Collect(maps.Values(s.buckets))
	s.mu.RUnlock()
	now := s.now().UnixNano()
	for _, m := range ms {
		m.sweep(now)
	}
	for _, b := range bs {
		b.sweep(now)
	}
}

// Stats returns the number of stored keys per map ("map:NAME") and bucket
// family ("bucket:NAME"), and the value of each counter ("counter:NAME").
// Map counts include expired entries that have not been dropped yet.
func (s *Store) Stats() map[string]int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]int, len(s.maps)+len(s.buckets)+len(s.counters))
	for name, m := range s.maps {
		out["map:"+name] = m.Len()
	}
	for name, b := range s.buckets {
		out["bucket:"+name] = b.Len()
	}
	for name, c := range s.counters {
		out["counter:"+name] = int(c.Get())
	}
	return out
}

// Counter is an atomic 64-bit counter.
type Counter struct{ v atomic.Int64 }

// Add adds delta and returns the new value.
func (c *Counter) Add(delta int64) int64 { return c.v.Add(delta) }

// Get returns the current value.
func (c *Counter) Get() int64 { return c.v.Load() }

// numShards is the number of independently locked parts of each map and
// bucket family; a power of two.
const numShards = 32

// shardOf hashes key with FNV-1a (inline: no allocation) to a shard index.
func shardOf(key string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return h & (numShards - 1)
}

// evictInterval is the least clock time between two eviction scans that a
// write to a full map or bucket family triggers. It bounds the work an
// attacker filling a table can cause: a scan visits every key.
const evictInterval = int64(time.Second)

// limiter counts the keys of a sharded table against its limit and decides
// when a full table may be scanned for evictable keys.
type limiter struct {
	max       int64
	count     atomic.Int64
	nextEvict atomic.Int64 // unix ns; no eviction scan before
}

// reserve claims room for one more key.
func (l *limiter) reserve() bool {
	if l.count.Add(1) > l.max {
		l.count.Add(-1)
		return false
	}
	return true
}

// mayEvict reports whether a write at now may run an eviction scan, and if
// so, pushes the next allowed scan evictInterval ahead.
func (l *limiter) mayEvict(now int64) bool {
	next := l.nextEvict.Load()
	return now >= next && l.nextEvict.CompareAndSwap(next, now+evictInterval)
}

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

// Defaults of Limits.
const (
	// DefaultMaxKeys is the key limit of each map and bucket family.
	DefaultMaxKeys = 1_000_000
	// DefaultMaxBytes is the byte limit of each map and bucket family:
	// about 170,000 entries with short keys.
	DefaultMaxBytes = 16 << 20
	// DefaultMaxValue is the longest key or string value a map stores.
	DefaultMaxValue = 64 << 10
)

// EntryOverhead is what every entry counts against Limits.MaxBytes besides
// the bytes of its key and string value: about what Go's map spends on it.
const EntryOverhead = 80

// Limits bounds the memory a Store may use. Each map and bucket family
// has these limits of its own.
type Limits struct {
	// MaxKeys is the most keys one map, or one bucket family, holds;
	// DefaultMaxKeys when <= 0.
	MaxKeys int
	// MaxBytes is the most bytes one map or bucket family holds, counting
	// each entry as its key's and string value's length plus
	// EntryOverhead; DefaultMaxBytes when <= 0.
	MaxBytes int64
	// MaxValue is the longest key or string value (in bytes) a map
	// stores, and the longest bucket key; DefaultMaxValue when <= 0.
	MaxValue int
}

func (l Limits) withDefaults() Limits {
	if l.MaxKeys <= 0 {
		l.MaxKeys = DefaultMaxKeys
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxValue <= 0 {
		l.MaxValue = DefaultMaxValue
	}
	return l
}

// ErrFull is returned when a new key or a longer value would exceed
// Limits.MaxKeys or Limits.MaxBytes even after dropping expired entries.
var ErrFull = errors.New("state: map full")

// ErrTooLong is returned for a key or string value longer than
// Limits.MaxValue.
var ErrTooLong = errors.New("state: key or value too long")

// ErrNotNumber is returned by Map.Incr when the key holds a value that is
// not a number.
var ErrNotNumber = errors.New("state: value is not a number")

// Store holds the named maps, counters and buckets of one engine.
type Store struct {
	now    Clock
	limits Limits

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
	return &Store{
		now:      now,
		limits:   limits.withDefaults(),
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
	return getOrCreate(s, s.maps, name, func() *Map { return newMap(name, s.now, s.limits) })
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
	b := getOrCreate(s, s.buckets, name, func() *Bucket { return newBucket(name, rate, burst, s.now, s.limits) })
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

// shardOf is key's shard index.
func shardOf(key string) uint32 { return ShardHash(key) & (numShards - 1) }

// ShardHash is the 32-bit FNV-1a hash of key, for choosing a shard: the
// one hash of this package and of host/state/cluster. It inlines and does
// not allocate (hash/fnv would, through its interface).
func ShardHash(key string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return h
}

// evictInterval is the least clock time between two eviction scans that a
// write to a full map or bucket family triggers. It bounds the work an
// attacker filling a table can cause: a scan visits every key.
const evictInterval = int64(time.Second)

// limiter counts the keys and bytes of a sharded table against its limits
// and decides when a full table may be scanned for evictable keys.
type limiter struct {
	max       int64 // keys
	maxBytes  int64
	maxValue  int
	count     atomic.Int64
	bytes     atomic.Int64
	nextEvict atomic.Int64 // unix ns; no eviction scan before
}

func newLimiter(l Limits) limiter {
	return limiter{max: int64(l.MaxKeys), maxBytes: l.MaxBytes, maxValue: l.MaxValue}
}

// reserve claims room for one more key of n bytes.
func (l *limiter) reserve(n int64) bool {
	if l.count.Add(1) > l.max {
		l.count.Add(-1)
		return false
	}
	if !l.grow(n) {
		l.count.Add(-1)
		return false
	}
	return true
}

// grow claims n more bytes (n > 0) or gives -n back; a change of 0, as
// for an update of a number, costs nothing.
func (l *limiter) grow(n int64) bool {
	if n == 0 {
		return true
	}
	if l.bytes.Add(n) > l.maxBytes && n > 0 {
		l.bytes.Add(-n)
		return false
	}
	return true
}

// release gives back a removed key of n bytes.
func (l *limiter) release(n int64) {
	l.count.Add(-1)
	l.bytes.Add(-n)
}

// fullError says which limit a table hit.
func (l *limiter) fullError(kind, name string) error {
	if l.count.Load() >= l.max {
		return fmt.Errorf("%w (%s %q, limit %d keys)", ErrFull, kind, name, l.max)
	}
	return fmt.Errorf("%w (%s %q, limit %d bytes)", ErrFull, kind, name, l.maxBytes)
}

// tooLong reports a key or value over Limits.MaxValue.
func (l *limiter) tooLong(kind, name, what string, n int) error {
	return fmt.Errorf("%w (%s %q: %s of %d bytes, limit %d)", ErrTooLong, kind, name, what, n, l.maxValue)
}

// mayEvict reports whether a write at now may run an eviction scan, and if
// so, pushes the next allowed scan evictInterval ahead.
func (l *limiter) mayEvict(now int64) bool {
	next := l.nextEvict.Load()
	return now >= next && l.nextEvict.CompareAndSwap(next, now+evictInterval)
}

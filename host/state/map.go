package state

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Kind is the type of a Value.
type Kind uint8

// The kinds of Value, matching the Lua types a map stores.
const (
	Nil Kind = iota
	Number
	String
	Bool
)

func (k Kind) String() string {
	switch k {
	case Nil:
		return "nil"
	case Number:
		return "number"
	case String:
		return "string"
	case Bool:
		return "boolean"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Value is a value stored in a Map; the field that Kind names holds it.
type Value struct {
	Kind Kind
	Num  float64
	Str  string
	Bool bool
}

// NumberValue returns a Number value.
func NumberValue(f float64) Value { return Value{Kind: Number, Num: f} }

// StringValue returns a String value.
func StringValue(s string) Value { return Value{Kind: String, Str: s} }

// BoolValue returns a Bool value.
func BoolValue(b bool) Value { return Value{Kind: Bool, Bool: b} }

type entry struct {
	v   Value
	exp int64 // unix ns at which the entry expires; 0: never
}

// cost is what an entry of key counts against Limits.MaxBytes.
func (e *entry) cost(key string) int64 {
	return int64(len(key)+len(e.v.Str)) + EntryOverhead
}

func (e *entry) expired(now *lazyNow) bool {
	return e.exp != 0 && now.get() >= e.exp
}

// lazyNow reads the clock at most once, and only when asked: most entries
// have no TTL and need no clock at all.
type lazyNow struct {
	clock Clock
	ns    int64
	read  bool
}

func (l *lazyNow) get() int64 {
	if !l.read {
		l.ns = l.clock().UnixNano()
		l.read = true
	}
	return l.ns
}

// expiry returns the expiry time of an entry written at now with ttl > 0.
func expiry(now int64, ttl time.Duration) int64 {
	exp := now + int64(ttl)
	if exp < now { // overflow: as good as never
		return math.MaxInt64
	}
	if exp == 0 { // 0 means no expiry; a clock before 1970 could hit it
		return 1
	}
	return exp
}

// Map is a string-keyed map of Values with optional per-key expiry, shared
// by all workers. Expired entries read as absent; they are dropped when
// next touched, by Store.Sweep, or when a full map needs room.
type Map struct {
	name  string
	clock Clock
	lim   limiter
	// earliest is a lower bound on the expiry of every entry with a TTL
	// (math.MaxInt64 when there is none): a full map need not be scanned
	// for expired entries before then.
	earliest atomic.Int64
	obs      atomic.Pointer[MapObserver]
	shards   [numShards]mapShard
}

// Change is one change to a map's key that a MapObserver hears of.
type Change struct {
	Key string
	// Deleted: the key was deleted (Delete, or Set with a Nil value).
	Deleted bool
	// Exp is when the entry expires, unix ns; 0: never.
	Exp int64
}

// MapObserver hears of the changes to a map's keys: a key created, its
// expiry changed, or the key deleted. A value changed in place (a Set of
// an existing key with the same expiry, an Incr) is not reported, nor is
// an entry's expiry (the observer knows Exp): neither its sweep nor the
// deletion of an expired entry. It is called with the key's shard locked, so that it hears
// the changes of one key in the order they were made: it must return at
// once, without blocking or using the map.
type MapObserver func(Change)

// Observe makes o hear of the map's changes from now on (nil: nobody),
// replacing any observer set before.
func (m *Map) Observe(o MapObserver) {
	if o == nil {
		m.obs.Store(nil)
		return
	}
	m.obs.Store(&o)
}

// notify tells the observer, if any, of a change (shard locked).
func (m *Map) notify(c Change) {
	if o := m.obs.Load(); o != nil {
		(*o)(c)
	}
}

type mapShard struct {
	mu sync.Mutex
	m  map[string]entry
	_  [64 - 16]byte // one shard per cache line
}

func newMap(name string, clock Clock, limits Limits) *Map {
	m := &Map{name: name, clock: clock, lim: newLimiter(limits)}
	m.earliest.Store(math.MaxInt64)
	for i := range m.shards {
		m.shards[i].m = make(map[string]entry)
	}
	return m
}

func (m *Map) noteExpiry(exp int64) {
	for {
		cur := m.earliest.Load()
		if exp >= cur || m.earliest.CompareAndSwap(cur, exp) {
			return
		}
	}
}

// Get returns the value stored under key; ok is false when there is none
// or it has expired.
func (m *Map) Get(key string) (v Value, ok bool) {
	now := lazyNow{clock: m.clock}
	sh := &m.shards[shardOf(key)]
	sh.mu.Lock()
	e, ok := sh.m[key]
	if ok && e.expired(&now) {
		delete(sh.m, key)
		m.lim.release(e.cost(key))
		ok = false
	}
	sh.mu.Unlock()
	if !ok {
		return Value{}, false
	}
	return e.v, true
}

// Set stores v under key, expiring after ttl (never when ttl <= 0). Setting
// a Nil value deletes the key. A key or string value longer than
// Limits.MaxValue fails with ErrTooLong. When the write would take the map
// past Limits.MaxKeys or Limits.MaxBytes, Set first drops expired entries
// (at most one such scan per second of clock time) and fails with ErrFull
// if that frees no room.
func (m *Map) Set(key string, v Value, ttl time.Duration) error {
	return m.set(key, v, ttl, 0)
}

// set is Set with the entry expiring after ttl (> 0) or, when at is not 0,
// at the unix ns time at.
func (m *Map) set(key string, v Value, ttl time.Duration, at int64) error {
	switch v.Kind {
	case Nil:
		m.Delete(key)
		return nil
	case Number, String, Bool:
	default:
		return fmt.Errorf("state: map %q key %q: invalid value kind %v", m.name, key, v.Kind)
	}
	if err := m.checkLen(key, v); err != nil {
		return err
	}
	now := lazyNow{clock: m.clock}
	e := entry{v: v}
	switch {
	case at != 0:
		e.exp = at
	case ttl > 0:
		e.exp = expiry(now.get(), ttl)
	}
	sh := &m.shards[shardOf(key)]
	old, live, err := m.lockSlot(sh, key, &now, e.cost(key), false)
	if err != nil {
		return err
	}
	sh.m[key] = e
	if !live || old.exp != e.exp {
		m.notify(Change{Key: key, Exp: e.exp})
	}
	sh.mu.Unlock()
	if e.exp != 0 {
		m.noteExpiry(e.exp)
	}
	return nil
}

// Incr adds delta to the number stored under key and returns the result.
// A missing or expired key is created as init+delta, expiring after ttl
// (never when ttl <= 0); an existing key keeps its expiry. A key holding
// a value other than a number is left alone and the error wraps
// ErrNotNumber. Creating a key in a full map fails as Set does.
func (m *Map) Incr(key string, delta, init float64, ttl time.Duration) (float64, error) {
	if err := m.checkLen(key, Value{}); err != nil {
		return 0, err
	}
	now := lazyNow{clock: m.clock}
	sh := &m.shards[shardOf(key)]
	e, live, err := m.lockSlot(sh, key, &now, int64(len(key))+EntryOverhead, true)
	if err != nil {
		return 0, err
	}
	if live {
		if e.v.Kind != Number {
			sh.mu.Unlock()
			return 0, fmt.Errorf("%w: map %q key %q holds a %v", ErrNotNumber, m.name, key, e.v.Kind)
		}
		e.v.Num += delta
	} else {
		if e.v.Str != "" { // an expired string entry becomes a number
			m.lim.grow(-int64(len(e.v.Str)))
		}
		e = entry{v: Value{Kind: Number, Num: init + delta}}
		if ttl > 0 {
			e.exp = expiry(now.get(), ttl)
		}
	}
	sh.m[key] = e
	if !live {
		m.notify(Change{Key: key, Exp: e.exp})
	}
	sh.mu.Unlock()
	if !live && e.exp != 0 {
		m.noteExpiry(e.exp)
	}
	return e.v.Num, nil
}

// checkLen refuses a key or string value over Limits.MaxValue.
func (m *Map) checkLen(key string, v Value) error {
	switch {
	case len(key) > m.lim.maxValue:
		return m.lim.tooLong("map", m.name, "key", len(key))
	case len(v.Str) > m.lim.maxValue:
		return m.lim.tooLong("map", m.name, "value", len(v.Str))
	}
	return nil
}

// lockSlot locks sh and makes sure key may be written with an entry that
// costs cost bytes: either it is stored already (live reports whether it
// has not expired, e is its entry) and, unless keep, the difference in
// cost has been claimed; or room for a new key has been reserved. Incr
// keeps: it changes an existing entry's size only when it replaces an
// expired string, and accounts for that itself. On error sh is unlocked.
func (m *Map) lockSlot(sh *mapShard, key string, now *lazyNow, cost int64, keep bool) (e entry, live bool, err error) {
	for attempt := 0; ; attempt++ {
		sh.mu.Lock()
		e, ok := sh.m[key]
		if ok {
			if keep || m.lim.grow(cost-e.cost(key)) {
				return e, !e.expired(now), nil
			}
		} else if m.lim.reserve(cost) {
			return entry{}, false, nil
		}
		sh.mu.Unlock()
		// Full. Other shards must not be locked while holding this one,
		// so drop expired entries unlocked and try once more.
		if attempt > 0 || !m.evict(now.get()) {
			return entry{}, false, m.lim.fullError("map", m.name)
		}
	}
}

// evict drops expired entries from a full map if any may have expired and
// no scan ran in the last evictInterval; it reports whether it scanned.
func (m *Map) evict(now int64) bool {
	if now < m.earliest.Load() || !m.lim.mayEvict(now) {
		return false
	}
	m.sweep(now)
	return true
}

// sweep drops entries expired at now and recomputes earliest.
func (m *Map) sweep(now int64) {
	// Reset first: entries written during the scan lower it again
	// themselves, so the result stays a lower bound.
	m.earliest.Store(math.MaxInt64)
	for i := range m.shards {
		sh := &m.shards[i]
		earliest := int64(math.MaxInt64)
		sh.mu.Lock()
		for k, e := range sh.m {
			if e.exp == 0 {
				continue
			}
			if now >= e.exp {
				delete(sh.m, k)
				m.lim.release(e.cost(k))
			} else {
				earliest = min(earliest, e.exp)
			}
		}
		sh.mu.Unlock()
		m.noteExpiry(earliest)
	}
}

// Delete removes key.
func (m *Map) Delete(key string) {
	sh := &m.shards[shardOf(key)]
	sh.mu.Lock()
	if e, ok := sh.m[key]; ok {
		delete(sh.m, key)
		m.lim.release(e.cost(key))
		if o := m.obs.Load(); o != nil {
			if now := (lazyNow{clock: m.clock}); !e.expired(&now) {
				(*o)(Change{Key: key, Deleted: true})
			}
		}
	}
	sh.mu.Unlock()
}

// Len returns the number of stored keys, including expired ones not yet
// dropped.
func (m *Map) Len() int { return int(m.lim.count.Load()) }

// Bytes returns what the stored entries count against Limits.MaxBytes.
func (m *Map) Bytes() int64 { return m.lim.bytes.Load() }

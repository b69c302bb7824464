package state

import (
	"maps"
	"slices"
	"sort"
	"time"
)

// The operator's view of a Store (`luafw state`): listing, reading and
// editing by name, without creating anything by looking. These walk whole
// maps under each shard's lock in turn, so they cost time in proportion to
// the map; they are meant for people and for saving, not for packets.

// Entry is one live map entry.
type Entry struct {
	Key     string
	Value   Value
	Expires time.Time // zero: never
}

// Names returns the names of the maps, counters and bucket families,
// each sorted.
func (s *Store) Names() (mapNames, counterNames, bucketNames []string) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Sorted(maps.Keys(s.maps)), slices.Sorted(maps.Keys(s.counters)), slices.Sorted(maps.Keys(s.buckets))
}

// LookupMap returns the map called name if it exists.
func (s *Store) LookupMap(name string) (*Map, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m, ok := s.maps[name]
	return m, ok
}

// LookupCounter returns the counter called name if it exists.
func (s *Store) LookupCounter(name string) (*Counter, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.counters[name]
	return c, ok
}

// LookupBucket returns the bucket family called name if it exists.
func (s *Store) LookupBucket(name string) (*Bucket, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	b, ok := s.buckets[name]
	return b, ok
}

// Set sets the counter's value.
func (c *Counter) Set(v int64) { c.v.Store(v) }

func expTime(exp int64) time.Time {
	if exp == 0 {
		return time.Time{}
	}
	return time.Unix(0, exp)
}

// Lookup returns key's live entry.
func (m *Map) Lookup(key string) (Entry, bool) {
	now := lazyNow{clock: m.clock}
	sh := &m.shards[shardOf(key)]
	sh.mu.Lock()
	e, ok := sh.m[key]
	sh.mu.Unlock()
	if !ok || e.expired(&now) {
		return Entry{}, false
	}
	return Entry{Key: key, Value: e.v, Expires: expTime(e.exp)}, true
}

// Entries returns the live entries sorted by key.
func (m *Map) Entries() []Entry {
	now := lazyNow{clock: m.clock}
	var out []Entry
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		for k, e := range sh.m {
			if !e.expired(&now) {
				out = append(out, Entry{Key: k, Value: e.v, Expires: expTime(e.exp)})
			}
		}
		sh.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// SetUntil stores v under key, expiring at exp (never when exp is zero).
// An expiry already past deletes the key. It fails as Set does on a full
// map.
func (m *Map) SetUntil(key string, v Value, exp time.Time) error {
	if exp.IsZero() {
		return m.Set(key, v, 0)
	}
	if !exp.After(m.clock()) {
		m.Delete(key)
		return nil
	}
	// The expiry itself, not a TTL from a second clock reading: a clock
	// that moves between two readings would shift it.
	return m.set(key, v, 0, exp.UnixNano())
}

// Remove deletes key and reports whether it held a live entry.
func (m *Map) Remove(key string) bool {
	_, live := m.Lookup(key)
	m.Delete(key)
	return live
}

// Flush deletes every key and returns how many live entries it removed.
func (m *Map) Flush() int {
	n := 0
	for _, e := range m.Entries() {
		m.Delete(e.Key)
		n++
	}
	m.sweep(m.clock().UnixNano()) // expired leftovers
	return n
}

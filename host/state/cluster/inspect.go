package cluster

import (
	"maps"
	"slices"

	"github.com/luafw/luafw/host/state"
)

// The operator's view of the cluster state (`luafw state`): listing,
// reading and editing by name, without creating anything by looking.
// Edits go through the same ordered writes as the plugins', so they act
// on the whole fleet.

// Names returns the names of the cluster maps, counters and bucket
// families this node has, each sorted.
func (s *Store) Names() (mapNames, counterNames, bucketNames []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.maps)), slices.Sorted(maps.Keys(s.counters)), slices.Sorted(maps.Keys(s.buckets))
}

// LookupMap returns the cluster map called name if this node has it.
func (s *Store) LookupMap(name string) (*Map, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.maps[name]
	return m, ok
}

// LookupCounter returns the cluster counter called name if this node has
// it.
func (s *Store) LookupCounter(name string) (*Counter, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.counters[name]
	return c, ok
}

// LookupBucket returns the local copy of the cluster bucket family called
// name if this node has it (its keys, rate and burst).
func (s *Store) LookupBucket(name string) (*state.Bucket, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.buckets[name]
	if !ok {
		return nil, false
	}
	return b.shared, true
}

// Entries returns the live entries of this node's copy, sorted by key.
func (m *Map) Entries() []state.Entry { return m.local.Entries() }

// Lookup returns key's live entry in this node's copy.
func (m *Map) Lookup(key string) (state.Entry, bool) { return m.local.Lookup(key) }

// Remove deletes key on every node (a delete with a version, as a
// plugin's) and reports whether this node's copy held it live.
func (m *Map) Remove(key string) bool {
	_, live := m.local.Lookup(key)
	m.delete(key, true)
	return live
}

// Flush deletes every key of this node's copy on every node, and returns
// how many it deleted.
func (m *Map) Flush() int {
	es := m.local.Entries()
	for _, e := range es {
		m.delete(e.Key, true)
	}
	return len(es)
}

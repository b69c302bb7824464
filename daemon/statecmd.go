package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/luafw/luafw/daemon/control"
	"github.com/luafw/luafw/host/state"
	"github.com/luafw/luafw/host/state/cluster"
)

// The state commands let an operator see and edit the shared state maps of
// the running daemon (`luafw state ...`): list them, show one, and get,
// set, delete or flush keys — how a ban is lifted, on this node or, for
// a cluster-scoped map, on the whole fleet.

// StateList is the answer of state.list.
type StateList struct {
	Maps     []StateMapInfo     `json:"maps"`
	Counters []StateCounterInfo `json:"counters"`
	Buckets  []StateBucketInfo  `json:"buckets"`
}

// StateMapInfo is one map in a list.
type StateMapInfo struct {
	Name  string `json:"name"`
	Scope string `json:"scope"` // local or cluster
	Keys  int    `json:"keys"`  // including expired keys not yet dropped
}

// StateCounterInfo is one counter.
type StateCounterInfo struct {
	Name  string `json:"name"`
	Scope string `json:"scope"`
	Value int64  `json:"value"`
}

// StateBucketInfo is one token-bucket family.
type StateBucketInfo struct {
	Name  string  `json:"name"`
	Scope string  `json:"scope"`
	Keys  int     `json:"keys"`
	Rate  float64 `json:"rate"`
	Burst float64 `json:"burst"`
}

// StateEntry is one map entry as the commands show it.
type StateEntry struct {
	Key     string     `json:"key"`
	Value   any        `json:"value"`
	Type    string     `json:"type"`
	Expires *time.Time `json:"expires,omitempty"` // absent: never
	TTL     float64    `json:"ttl,omitempty"`     // seconds left
}

// StateShow is the answer of state.show.
type StateShow struct {
	Name      string       `json:"name"`
	Scope     string       `json:"scope"`
	Kind      string       `json:"kind"` // map, counter or bucket
	Entries   []StateEntry `json:"entries,omitempty"`
	Truncated int          `json:"truncated,omitempty"` // entries left out past the limit
	Value     *int64       `json:"value,omitempty"`     // a counter's
	// A bucket family's keys (those not refilled to full), rate (tokens
	// per second) and burst.
	Keys  *int    `json:"keys,omitempty"`
	Rate  float64 `json:"rate,omitempty"`
	Burst float64 `json:"burst,omitempty"`
}

// StateArgs are the arguments of the state commands.
type StateArgs struct {
	Name string `json:"name"`
	// Scope is local or cluster; empty: the scope that has Name (an error
	// when both have it).
	Scope string  `json:"scope,omitempty"`
	Key   string  `json:"key,omitempty"`
	Value any     `json:"value,omitempty"` // state.set: a number, string or boolean
	TTL   float64 `json:"ttl,omitempty"`   // state.set: seconds; 0 never expires
	Limit int     `json:"limit,omitempty"` // state.show: most entries shown (0: all)
}

// StateChange is the answer of state.set, state.delete and state.flush.
type StateChange struct {
	Name    string `json:"name"`
	Scope   string `json:"scope"`
	Key     string `json:"key,omitempty"`
	Changed int    `json:"changed"` // keys set, deleted or flushed
}

// StateScope is one scope of state the commands see and edit: the
// node-local store, or the cluster-scoped one (LocalScope over the
// engine's store of cluster-scoped state without a backend, ClusterScope
// over host/state/cluster's, whose edits act on the whole fleet).
type StateScope interface {
	names() (maps, counters, buckets []string)
	lookupMap(name string) (stateMap, bool)
	createMap(name string) stateMap
	counter(name string) (int64, bool)
	bucket(name string) (*state.Bucket, bool)
}

// stateMap is what the commands do with a map; *state.Map and
// *cluster.Map have it.
type stateMap interface {
	Len() int
	Entries() []state.Entry
	Lookup(key string) (state.Entry, bool)
	Set(key string, v state.Value, ttl time.Duration) error
	Remove(key string) bool
	Flush() int
}

// LocalScope is a StateScope over a store of this process.
func LocalScope(st *state.Store) StateScope { return localScope{st} }

// ClusterScope is a StateScope over the fleet's shared state.
func ClusterScope(cs *cluster.Store) StateScope { return clusterScope{cs} }

type localScope struct{ st *state.Store }

func (l localScope) names() ([]string, []string, []string) { return l.st.Names() }
func (l localScope) lookupMap(name string) (stateMap, bool) {
	m, ok := l.st.LookupMap(name)
	return m, ok
}
func (l localScope) createMap(name string) stateMap { return l.st.Map(name) }
func (l localScope) counter(name string) (int64, bool) {
	c, ok := l.st.LookupCounter(name)
	if !ok {
		return 0, false
	}
	return c.Get(), true
}
func (l localScope) bucket(name string) (*state.Bucket, bool) { return l.st.LookupBucket(name) }

type clusterScope struct{ cs *cluster.Store }

func (c clusterScope) names() ([]string, []string, []string) { return c.cs.Names() }
func (c clusterScope) lookupMap(name string) (stateMap, bool) {
	m, ok := c.cs.LookupMap(name)
	return m, ok
}
func (c clusterScope) createMap(name string) stateMap {
	c.cs.Map(name)
	m, _ := c.cs.LookupMap(name)
	return m
}
func (c clusterScope) counter(name string) (int64, bool) {
	ct, ok := c.cs.LookupCounter(name)
	if !ok {
		return 0, false
	}
	return ct.Get(), true
}
func (c clusterScope) bucket(name string) (*state.Bucket, bool) { return c.cs.LookupBucket(name) }

// scopes are the scopes the commands see, node-local first.
type scopes []struct {
	name string
	s    StateScope
}

// pick returns the scopes a command with scope want (empty: all) looks in.
func (sc scopes) pick(want string) (scopes, error) {
	if want == "" {
		return sc, nil
	}
	for _, s := range sc {
		if s.name == want {
			return scopes{s}, nil
		}
	}
	if want == "cluster" || want == "local" {
		return nil, fmt.Errorf("no %s state here", want)
	}
	return nil, fmt.Errorf("scope %q: want local or cluster", want)
}

// lookupMap finds the map a command names: in the one scope that has it.
// create makes a missing map in the scope asked for (local by default).
func (sc scopes) lookupMap(a StateArgs, create bool) (string, stateMap, error) {
	in, err := sc.pick(a.Scope)
	if err != nil {
		return "", nil, err
	}
	var found []string
	var m stateMap
	for _, s := range in {
		if mm, ok := s.s.lookupMap(a.Name); ok {
			found, m = append(found, s.name), mm
		}
	}
	switch {
	case len(found) == 1:
		return found[0], m, nil
	case len(found) > 1:
		return "", nil, fmt.Errorf("state map %q exists in both scopes: say --scope local or --scope cluster", a.Name)
	}
	if err := in.notAMap(a.Name); err != nil {
		return "", nil, err
	}
	switch {
	case create:
		return in[0].name, in[0].s.createMap(a.Name), nil
	}
	var all []string
	for _, s := range sc {
		names, _, _ := s.s.names()
		for _, n := range names {
			if s.name != "local" {
				n += " (" + s.name + ")"
			}
			all = append(all, n)
		}
	}
	if len(all) == 0 {
		return "", nil, fmt.Errorf("no state map %q (the daemon has none)", a.Name)
	}
	return "", nil, fmt.Errorf("no state map %q (maps: %s)", a.Name, strings.Join(all, ", "))
}

// notAMap says what name is when it is a counter or a bucket family in
// one of the scopes, which have no keys to get, set, delete or flush; nil
// when it is neither.
func (sc scopes) notAMap(name string) error {
	for _, s := range sc {
		if _, ok := s.s.counter(name); ok {
			return fmt.Errorf("%q is a counter, not a map: it has no keys (luafw state show %s prints its value)", name, name)
		}
		if _, ok := s.s.bucket(name); ok {
			return fmt.Errorf("%q is a token bucket family, not a map: its keys refill by themselves (luafw state show %s prints its rate, burst and keys)", name, name)
		}
	}
	return nil
}

// HandleState registers the state commands on srv, over the node-local
// store st and the cluster-scoped state cl (nil: none); log records every
// change an operator makes. Changes to a map of the cluster scope act on
// the whole fleet.
func HandleState(srv *control.Server, st *state.Store, cl StateScope, log *slog.Logger) {
	sc := scopes{{"local", LocalScope(st)}}
	if cl != nil {
		sc = append(sc, struct {
			name string
			s    StateScope
		}{"cluster", cl})
	}
	handle := func(name string, fn func(a StateArgs) (any, error)) {
		srv.Handle(name, func(_ context.Context, raw json.RawMessage, _ func(any) error) (any, error) {
			var a StateArgs
			if err := control.DecodeArgs(raw, &a); err != nil {
				return nil, err
			}
			return fn(a)
		})
	}
	handle("state.list", func(StateArgs) (any, error) { return stateList(sc), nil })
	handle("state.show", func(a StateArgs) (any, error) { return stateShow(sc, a) })
	handle("state.get", func(a StateArgs) (any, error) {
		_, m, err := sc.lookupMap(a, false)
		if err != nil {
			return nil, err
		}
		e, ok := m.Lookup(a.Key)
		if !ok {
			return nil, fmt.Errorf("state map %q has no key %q", a.Name, a.Key)
		}
		return entryOf(e, time.Now()), nil
	})
	handle("state.set", func(a StateArgs) (any, error) {
		v, err := state.ValueFromAny(a.Value)
		if err != nil {
			return nil, err
		}
		if a.Name == "" || a.TTL < 0 {
			return nil, fmt.Errorf("state.set: want a map name and a ttl >= 0")
		}
		scope, m, err := sc.lookupMap(a, true)
		if err != nil {
			return nil, err
		}
		if err := m.Set(a.Key, v, time.Duration(a.TTL*float64(time.Second))); err != nil {
			return nil, err
		}
		log.Info("state key set by operator", "map", a.Name, "scope", scope, "key", a.Key, "ttl", a.TTL)
		return StateChange{Name: a.Name, Scope: scope, Key: a.Key, Changed: 1}, nil
	})
	handle("state.delete", func(a StateArgs) (any, error) {
		scope, m, err := sc.lookupMap(a, false)
		if err != nil {
			return nil, err
		}
		c := StateChange{Name: a.Name, Scope: scope, Key: a.Key}
		if m.Remove(a.Key) {
			c.Changed = 1
		}
		log.Info("state key deleted by operator", "map", a.Name, "scope", scope, "key", a.Key, "existed", c.Changed == 1)
		return c, nil
	})
	handle("state.flush", func(a StateArgs) (any, error) {
		scope, m, err := sc.lookupMap(a, false)
		if err != nil {
			return nil, err
		}
		n := m.Flush()
		log.Info("state map flushed by operator", "map", a.Name, "scope", scope, "keys", n)
		return StateChange{Name: a.Name, Scope: scope, Changed: n}, nil
	})
}

func stateList(sc scopes) StateList {
	l := StateList{Maps: []StateMapInfo{}, Counters: []StateCounterInfo{}, Buckets: []StateBucketInfo{}}
	for _, s := range sc {
		maps, counters, buckets := s.s.names()
		for _, n := range maps {
			if m, ok := s.s.lookupMap(n); ok {
				l.Maps = append(l.Maps, StateMapInfo{Name: n, Scope: s.name, Keys: m.Len()})
			}
		}
		for _, n := range counters {
			if v, ok := s.s.counter(n); ok {
				l.Counters = append(l.Counters, StateCounterInfo{Name: n, Scope: s.name, Value: v})
			}
		}
		for _, n := range buckets {
			if b, ok := s.s.bucket(n); ok {
				l.Buckets = append(l.Buckets, StateBucketInfo{Name: n, Scope: s.name, Keys: b.Len(), Rate: b.Rate(), Burst: b.Burst()})
			}
		}
	}
	return l
}

func stateShow(sc scopes, a StateArgs) (StateShow, error) {
	in, err := sc.pick(a.Scope)
	if err != nil {
		return StateShow{}, err
	}
	for _, s := range in {
		if v, ok := s.s.counter(a.Name); ok {
			if _, isMap := s.s.lookupMap(a.Name); !isMap {
				return StateShow{Name: a.Name, Scope: s.name, Kind: "counter", Value: &v}, nil
			}
		}
	}
	for _, s := range in {
		if b, ok := s.s.bucket(a.Name); ok {
			if _, isMap := s.s.lookupMap(a.Name); !isMap {
				n := b.Len()
				return StateShow{Name: a.Name, Scope: s.name, Kind: "bucket", Keys: &n, Rate: b.Rate(), Burst: b.Burst()}, nil
			}
		}
	}
	scope, m, err := sc.lookupMap(a, false)
	if err != nil {
		return StateShow{}, err
	}
	now := time.Now()
	s := StateShow{Name: a.Name, Scope: scope, Kind: "map", Entries: []StateEntry{}}
	entries := m.Entries()
	if a.Limit > 0 && len(entries) > a.Limit {
		s.Truncated = len(entries) - a.Limit
		entries = entries[:a.Limit]
	}
	for _, e := range entries {
		s.Entries = append(s.Entries, entryOf(e, now))
	}
	return s, nil
}

func entryOf(e state.Entry, now time.Time) StateEntry {
	se := StateEntry{Key: e.Key, Value: state.ValueJSON(e.Value), Type: e.Value.Kind.String()}
	if !e.Expires.IsZero() {
		t := e.Expires.UTC()
		se.Expires = &t
		se.TTL = max(0, e.Expires.Sub(now).Seconds())
	}
	return se
}

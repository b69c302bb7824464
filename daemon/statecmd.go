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
)

// The state commands let an operator see and edit the shared state maps of
// the running daemon (`luafw state ...`): list them, show one, and get,
// set, delete or flush keys — how a ban is lifted.

// StateList is the answer of state.list.
type StateList struct {
	Maps     []StateMapInfo     `json:"maps"`
	Counters []StateCounterInfo `json:"counters"`
	Buckets  []StateBucketInfo  `json:"buckets"`
}

// StateMapInfo is one map in a list.
type StateMapInfo struct {
	Name string `json:"name"`
	Keys int    `json:"keys"` // including expired keys not yet dropped
}

// StateCounterInfo is one counter.
type StateCounterInfo struct {
	Name  string `json:"name"`
	Value int64  `json:"value"`
}

// StateBucketInfo is one token-bucket family.
type StateBucketInfo struct {
	Name  string  `json:"name"`
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
	Name  string  `json:"name"`
	Key   string  `json:"key,omitempty"`
	Value any     `json:"value,omitempty"` // state.set: a number, string or boolean
	TTL   float64 `json:"ttl,omitempty"`   // state.set: seconds; 0 never expires
	Limit int     `json:"limit,omitempty"` // state.show: most entries shown (0: all)
}

// StateChange is the answer of state.set, state.delete and state.flush.
type StateChange struct {
	Name    string `json:"name"`
	Key     string `json:"key,omitempty"`
	Changed int    `json:"changed"` // keys set, deleted or flushed
}

// HandleState registers the state commands on srv, over store st; log
// records every change an operator makes.
func HandleState(srv *control.Server, st *state.Store, log *slog.Logger) {
	handle := func(name string, fn func(a StateArgs) (any, error)) {
		srv.Handle(name, func(_ context.Context, raw json.RawMessage, _ func(any) error) (any, error) {
			var a StateArgs
			if err := control.DecodeArgs(raw, &a); err != nil {
				return nil, err
			}
			return fn(a)
		})
	}
	handle("state.list", func(StateArgs) (any, error) { return stateList(st), nil })
	handle("state.show", func(a StateArgs) (any, error) { return stateShow(st, a) })
	handle("state.get", func(a StateArgs) (any, error) {
		m, err := lookupMap(st, a.Name)
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
		if _, isMap := st.LookupMap(a.Name); !isMap {
			if err := notAMap(st, a.Name); err != nil {
				return nil, err
			}
		}
		if err := st.Map(a.Name).Set(a.Key, v, time.Duration(a.TTL*float64(time.Second))); err != nil {
			return nil, err
		}
		log.Info("state key set by operator", "map", a.Name, "key", a.Key, "ttl", a.TTL)
		return StateChange{Name: a.Name, Key: a.Key, Changed: 1}, nil
	})
	handle("state.delete", func(a StateArgs) (any, error) {
		m, err := lookupMap(st, a.Name)
		if err != nil {
			return nil, err
		}
		c := StateChange{Name: a.Name, Key: a.Key}
		if m.Remove(a.Key) {
			c.Changed = 1
		}
		log.Info("state key deleted by operator", "map", a.Name, "key", a.Key, "existed", c.Changed == 1)
		return c, nil
	})
	handle("state.flush", func(a StateArgs) (any, error) {
		m, err := lookupMap(st, a.Name)
		if err != nil {
			return nil, err
		}
		n := m.Flush()
		log.Info("state map flushed by operator", "map", a.Name, "keys", n)
		return StateChange{Name: a.Name, Changed: n}, nil
	})
}

func stateList(st *state.Store) StateList {
	l := StateList{Maps: []StateMapInfo{}, Counters: []StateCounterInfo{}, Buckets: []StateBucketInfo{}}
	maps, counters, buckets := st.Names()
	for _, n := range maps {
		m, _ := st.LookupMap(n)
		l.Maps = append(l.Maps, StateMapInfo{Name: n, Keys: m.Len()})
	}
	for _, n := range counters {
		c, _ := st.LookupCounter(n)
		l.Counters = append(l.Counters, StateCounterInfo{Name: n, Value: c.Get()})
	}
	for _, n := range buckets {
		b, _ := st.LookupBucket(n)
		l.Buckets = append(l.Buckets, StateBucketInfo{Name: n, Keys: b.Len(), Rate: b.Rate(), Burst: b.Burst()})
	}
	return l
}

func stateShow(st *state.Store, a StateArgs) (StateShow, error) {
	if c, ok := st.LookupCounter(a.Name); ok {
		if _, isMap := st.LookupMap(a.Name); !isMap {
			v := c.Get()
			return StateShow{Name: a.Name, Kind: "counter", Value: &v}, nil
		}
	}
	if b, ok := st.LookupBucket(a.Name); ok {
		if _, isMap := st.LookupMap(a.Name); !isMap {
			n := b.Len()
			return StateShow{Name: a.Name, Kind: "bucket", Keys: &n, Rate: b.Rate(), Burst: b.Burst()}, nil
		}
	}
	m, err := lookupMap(st, a.Name)
	if err != nil {
		return StateShow{}, err
	}
	now := time.Now()
	s := StateShow{Name: a.Name, Kind: "map", Entries: []StateEntry{}}
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

func lookupMap(st *state.Store, name string) (*state.Map, error) {
	if m, ok := st.LookupMap(name); ok {
		return m, nil
	}
	if err := notAMap(st, name); err != nil {
		return nil, err
	}
	maps, _, _ := st.Names()
	if len(maps) == 0 {
		return nil, fmt.Errorf("no state map %q (the daemon has none)", name)
	}
	return nil, fmt.Errorf("no state map %q (maps: %s)", name, strings.Join(maps, ", "))
}

// notAMap says what name is when it is a counter or a bucket family, which
// have no keys to get, set, delete or flush; nil when it is neither.
func notAMap(st *state.Store, name string) error {
	if _, ok := st.LookupCounter(name); ok {
		return fmt.Errorf("%q is a counter, not a map: it has no keys (luafw state show %s prints its value)", name, name)
	}
	if _, ok := st.LookupBucket(name); ok {
		return fmt.Errorf("%q is a token bucket family, not a map: its keys refill by themselves (luafw state show %s prints its rate, burst and keys)", name, name)
	}
	return nil
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

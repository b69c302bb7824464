package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
)

// The saved form of a Store, so bans survive restarts and upgrades:
//
//	{"format":"luafw-state","version":1,"saved":"2026-12-01T15:00:00Z",
//	 "maps":{"bans":[{"key":"10.0.0.9","value":true,"expires":"2026-12-01T16:00:00Z"}]},
//	 "counters":{"drops":42}}
//
// Values keep their Lua type (number, string, boolean); "expires" is absent
// for entries that never expire. Token buckets are not saved: a restart
// refills them, which errs towards letting traffic through for one burst.

// FileFormat and FileVersion identify the saved form; Restore refuses other
// formats and newer versions.
const (
	FileFormat  = "luafw-state"
	FileVersion = 1
)

type savedFile struct {
	Format   string                  `json:"format"`
	Version  int                     `json:"version"`
	Saved    time.Time               `json:"saved"`
	Maps     map[string][]savedEntry `json:"maps"`
	Counters map[string]int64        `json:"counters"`
}

type savedEntry struct {
	Key     string          `json:"key"`
	Value   json.RawMessage `json:"value"`
	Expires *time.Time      `json:"expires,omitempty"`
}

// ErrBadFile wraps every reason Restore refuses a file.
var ErrBadFile = errors.New("state: unusable state file")

// Save writes the live map entries and the counters to w.
func (s *Store) Save(w io.Writer) error {
	mapNames, counterNames, _ := s.Names()
	f := savedFile{Format: FileFormat, Version: FileVersion, Saved: s.now().UTC(),
		Maps: map[string][]savedEntry{}, Counters: map[string]int64{}}
	for _, name := range mapNames {
		m, _ := s.LookupMap(name)
		entries := []savedEntry{}
		for _, e := range m.Entries() {
			v, err := json.Marshal(ValueJSON(e.Value))
			if err != nil {
				return fmt.Errorf("state: map %q key %q: %w", name, e.Key, err)
			}
			se := savedEntry{Key: e.Key, Value: v}
			if !e.Expires.IsZero() {
				t := e.Expires.UTC()
				se.Expires = &t
			}
			entries = append(entries, se)
		}
		f.Maps[name] = entries
	}
	for _, name := range counterNames {
		c, _ := s.LookupCounter(name)
		f.Counters[name] = c.Get()
	}
	enc := json.NewEncoder(w)
	if err := enc.Encode(&f); err != nil {
		return fmt.Errorf("state: saving: %w", err)
	}
	return nil
}

// Restored counts what Restore put back.
type Restored struct {
	Maps, Entries, Expired, Counters int
	Saved                            time.Time
}

// Restore reads a saved Store from r into s: entries replace keys of the
// same name, keeping their expiry time; entries already expired are
// dropped; counters take their saved values. The whole file is checked
// before anything is restored, so a corrupt file changes nothing and the
// error wraps ErrBadFile.
func (s *Store) Restore(r io.Reader) (Restored, error) {
	var f savedFile
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return Restored{}, fmt.Errorf("%w: %w", ErrBadFile, err)
	}
	if f.Format != FileFormat {
		return Restored{}, fmt.Errorf("%w: format %q, want %q", ErrBadFile, f.Format, FileFormat)
	}
	if f.Version < 1 || f.Version > FileVersion {
		return Restored{}, fmt.Errorf("%w: version %d; this luafw reads versions 1 to %d", ErrBadFile, f.Version, FileVersion)
	}
	vals := map[string][]Value{}
	for name, entries := range f.Maps {
		for _, e := range entries {
			v, err := valueFromJSON(e.Value)
			if err != nil {
				return Restored{}, fmt.Errorf("%w: map %q key %q: %w", ErrBadFile, name, e.Key, err)
			}
			vals[name] = append(vals[name], v)
		}
	}
	res := Restored{Saved: f.Saved}
	now := s.now()
	for name, entries := range f.Maps {
		m := s.Map(name)
		res.Maps++
		for i, e := range entries {
			var exp time.Time
			if e.Expires != nil {
				if !e.Expires.After(now) {
					res.Expired++
					continue
				}
				exp = *e.Expires
			}
			if err := m.SetUntil(e.Key, vals[name][i], exp); err != nil {
				return res, fmt.Errorf("state: restoring map %q: %w", name, err)
			}
			res.Entries++
		}
	}
	for name, v := range f.Counters {
		s.Counter(name).Set(v)
		res.Counters++
	}
	return res, nil
}

// ValueJSON is v as a JSON-encodable Go value (float64, string or bool;
// nil for Nil).
func ValueJSON(v Value) any {
	switch v.Kind {
	case Number:
		if math.IsInf(v.Num, 0) || math.IsNaN(v.Num) {
			return fmt.Sprint(v.Num) // JSON has no such numbers
		}
		return v.Num
	case String:
		return v.Str
	case Bool:
		return v.Bool
	}
	return nil
}

// valueFromJSON reads a saved value: a number, string or boolean.
func valueFromJSON(raw json.RawMessage) (Value, error) {
	var x any
	if err := json.Unmarshal(raw, &x); err != nil {
		return Value{}, err
	}
	return ValueFromAny(x)
}

// ValueFromAny converts a decoded JSON value to a Value.
func ValueFromAny(x any) (Value, error) {
	switch x := x.(type) {
	case float64:
		return NumberValue(x), nil
	case string:
		return StringValue(x), nil
	case bool:
		return BoolValue(x), nil
	}
	return Value{}, fmt.Errorf("value %v: want a number, string or boolean", x)
}

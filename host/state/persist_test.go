package state

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestInspect(t *testing.T) {
	s, clock := newTestStore(0)
	bans := s.Map("bans")
	bans.Set("10.0.0.9", BoolValue(true), time.Hour)
	bans.Set("10.0.0.1", StringValue("manual"), 0)
	bans.Set("10.0.0.5", NumberValue(3), time.Second)
	s.Counter("drops").Add(7)
	if _, err := s.Bucket("syn", 10, 20); err != nil {
		t.Fatal(err)
	}
	maps, counters, buckets := s.Names()
	if strings.Join(maps, ",") != "bans" || strings.Join(counters, ",") != "drops" || strings.Join(buckets, ",") != "syn" {
		t.Fatalf("names %v %v %v", maps, counters, buckets)
	}
	if _, ok := s.LookupMap("nope"); ok {
		t.Fatal("LookupMap found a map that was never made")
	}
	if _, _, _ = s.Names(); len(s.maps) != 1 {
		t.Fatal("looking created a map")
	}
	clock.Advance(2 * time.Second) // 10.0.0.5 expires
	var keys []string
	for _, e := range bans.Entries() {
		keys = append(keys, e.Key)
	}
	if strings.Join(keys, ",") != "10.0.0.1,10.0.0.9" {
		t.Fatalf("entries %v", keys)
	}
	e, ok := bans.Lookup("10.0.0.9")
	if !ok || e.Value != BoolValue(true) || !e.Expires.Equal(time.Unix(1_700_000_000, 0).Add(time.Hour)) {
		t.Fatalf("lookup %+v %v", e, ok)
	}
	if !bans.Remove("10.0.0.9") || bans.Remove("10.0.0.9") {
		t.Fatal("Remove: want true then false")
	}
	if n := bans.Flush(); n != 1 || bans.Len() != 0 {
		t.Fatalf("flush removed %d, left %d", n, bans.Len())
	}
}

// TestSaveRestore: entries come back with their expiry times, expired ones
// are dropped, counters keep their values.
func TestSaveRestore(t *testing.T) {
	s, clock := newTestStore(0)
	bans := s.Map("bans")
	bans.Set("a", BoolValue(true), time.Hour)
	bans.Set("b", NumberValue(2.5), 10*time.Second)
	bans.Set("c", StringValue("forever"), 0)
	s.Map("empty")
	s.Counter("n").Add(42)
	var buf bytes.Buffer
	if err := s.Save(&buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"format":"luafw-state","version":1`) {
		t.Fatalf("saved: %s", buf.String())
	}
	clock.Advance(time.Minute) // b has expired by the time we restore
	s2 := NewStore(clock.Now, Limits{})
	res, err := s2.Restore(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if res.Maps != 2 || res.Entries != 2 || res.Expired != 1 || res.Counters != 1 {
		t.Fatalf("restored %+v", res)
	}
	b2 := s2.Map("bans")
	mustGet(t, b2, "a", BoolValue(true))
	mustGet(t, b2, "c", StringValue("forever"))
	if _, ok := b2.Get("b"); ok {
		t.Fatal("expired entry restored")
	}
	if e, _ := b2.Lookup("a"); !e.Expires.Equal(time.Unix(1_700_000_000, 0).Add(time.Hour)) {
		t.Fatalf("a expires %v, want its saved time", e.Expires)
	}
	if s2.Counter("n").Get() != 42 {
		t.Fatal("counter not restored")
	}
	clock.Advance(time.Hour)
	if _, ok := b2.Get("a"); ok {
		t.Fatal("restored entry outlived its expiry")
	}
}

func TestRestoreRefusesBadFiles(t *testing.T) {
	for name, in := range map[string]string{
		"not json":      "{\"format\":",
		"other format":  `{"format":"x","version":1}`,
		"newer version": `{"format":"luafw-state","version":99}`,
		"bad value":     `{"format":"luafw-state","version":1,"maps":{"m":[{"key":"k","value":[1]}]}}`,
		"unknown field": `{"format":"luafw-state","version":1,"mapz":{}}`,
	} {
		s, _ := newTestStore(0)
		_, err := s.Restore(strings.NewReader(in))
		if !errors.Is(err, ErrBadFile) {
			t.Errorf("%s: %v, want ErrBadFile", name, err)
		}
		if m, _, _ := s.Names(); len(m) != 0 {
			t.Errorf("%s: a refused file created maps %v", name, m)
		}
	}
}

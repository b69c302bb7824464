package state

import (
	"slices"
	"testing"
	"time"
)

// An observer hears of keys created, deleted and given another expiry,
// in order, and of nothing else.
func TestMapObserver(t *testing.T) {
	clk := newFakeClock()
	s := NewStore(clk.Now, Limits{})
	m := s.Map("m")
	var got []Change
	m.Observe(func(c Change) { got = append(got, c) })
	t0 := clk.Now()
	exp := func(d time.Duration) int64 { return t0.Add(d).UnixNano() }

	mustSet := func(k string, v Value, ttl time.Duration) {
		t.Helper()
		if err := m.Set(k, v, ttl); err != nil {
			t.Fatal(err)
		}
	}
	mustSet("a", BoolValue(true), 0)
	mustSet("a", BoolValue(false), 0) // same expiry: not heard
	mustSet("b", NumberValue(1), time.Minute)
	mustSet("b", NumberValue(1), time.Hour)
	if _, err := m.Incr("c", 1, 0, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Incr("c", 1, 0, time.Second); err != nil { // in place: not heard
		t.Fatal(err)
	}
	m.Delete("a")
	m.Delete("nosuch")
	mustSet("b", Value{}, 0) // Nil deletes
	if err := m.SetUntil("d", StringValue("x"), clk.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Second)
	m.Delete("c") // expired: the observer knew when
	s.Sweep()
	want := []Change{
		{Key: "a"},
		{Key: "b", Exp: exp(time.Minute)},
		{Key: "b", Exp: exp(time.Hour)},
		{Key: "c", Exp: exp(time.Second)},
		{Key: "a", Deleted: true},
		{Key: "b", Deleted: true},
		{Key: "d", Exp: exp(time.Minute)},
	}
	if !slices.Equal(got, want) {
		t.Errorf("observed:\n%v\nwant:\n%v", got, want)
	}
	m.Observe(nil)
	mustSet("e", BoolValue(true), 0)
	if len(got) != len(want) {
		t.Errorf("after Observe(nil): heard %v", got[len(want):])
	}
}

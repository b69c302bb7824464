package state

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a Clock that moves only when told to.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestStore(maxKeys int) (*Store, *fakeClock) {
	c := newFakeClock()
	return NewStore(c.Now, Limits{MaxKeys: maxKeys}), c
}

func mustGet(t *testing.T, m *Map, key string, want Value) {
	t.Helper()
	got, ok := m.Get(key)
	if !ok || got != want {
		t.Errorf("Get(%q) = %+v, %v; want %+v, true", key, got, ok, want)
	}
}

func mustMiss(t *testing.T, m *Map, key string) {
	t.Helper()
	if got, ok := m.Get(key); ok {
		t.Errorf("Get(%q) = %+v, true; want absent", key, got)
	}
}

func TestMapValues(t *testing.T) {
	s, _ := newTestStore(0)
	m := s.Map("m")
	if s.Map("m") != m {
		t.Fatal("Map(same name) returned a different map")
	}
	if s.Map("other") == m {
		t.Fatal("Map(other name) returned the same map")
	}
	mustMiss(t, m, "nope")
	for key, v := range map[string]Value{
		"n": NumberValue(-1.5), "s": StringValue("héllo"), "empty": StringValue(""),
		"t": BoolValue(true), "f": BoolValue(false),
	} {
		if err := m.Set(key, v, 0); err != nil {
			t.Fatalf("Set(%q): %v", key, err)
		}
		mustGet(t, m, key, v)
	}
	if m.Len() != 5 {
		t.Errorf("Len = %d, want 5", m.Len())
	}
	// Overwrite with another kind.
	if err := m.Set("n", StringValue("x"), 0); err != nil {
		t.Fatal(err)
	}
	mustGet(t, m, "n", StringValue("x"))
	// A Nil value deletes.
	if err := m.Set("n", Value{}, 0); err != nil {
		t.Fatal(err)
	}
	mustMiss(t, m, "n")
	m.Delete("s")
	m.Delete("never-there")
	mustMiss(t, m, "s")
	if m.Len() != 3 {
		t.Errorf("Len = %d, want 3", m.Len())
	}
	if err := m.Set("bad", Value{Kind: 42}, 0); err == nil {
		t.Error("Set with an invalid kind succeeded")
	}
}

func TestMapTTL(t *testing.T) {
	s, clock := newTestStore(0)
	m := s.Map("ttl")
	if err := m.Set("short", NumberValue(1), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := m.Set("forever", NumberValue(2), 0); err != nil {
		t.Fatal(err)
	}
	if err := m.Set("negative", NumberValue(3), -time.Second); err != nil {
		t.Fatal(err)
	}
	if err := m.Set("huge", NumberValue(4), math.MaxInt64); err != nil { // must not overflow into the past
		t.Fatal(err)
	}
	clock.Advance(10*time.Second - 1)
	mustGet(t, m, "short", NumberValue(1))
	clock.Advance(1)
	mustMiss(t, m, "short")
	if m.Len() != 3 {
		t.Errorf("Len after reading an expired key = %d, want 3", m.Len())
	}
	clock.Advance(10_000 * time.Hour)
	mustGet(t, m, "forever", NumberValue(2))
	mustGet(t, m, "negative", NumberValue(3))
	mustGet(t, m, "huge", NumberValue(4))

	// Set replaces the expiry: a TTL can be removed and added.
	m.Set("k", StringValue("a"), time.Second)
	m.Set("k", StringValue("b"), 0)
	clock.Advance(time.Hour)
	mustGet(t, m, "k", StringValue("b"))
	m.Set("k", StringValue("c"), time.Second)
	clock.Advance(time.Second)
	mustMiss(t, m, "k")
}

func TestIncr(t *testing.T) {
	s, clock := newTestStore(0)
	m := s.Map("incr")
	incr := func(key string, delta, init float64, ttl time.Duration, want float64) {
		t.Helper()
		got, err := m.Incr(key, delta, init, ttl)
		if err != nil || got != want {
			t.Errorf("Incr(%q, %v, %v, %v) = %v, %v; want %v", key, delta, init, ttl, got, err, want)
		}
	}
	incr("a", 1, 0, 0, 1)
	incr("a", 1, 0, 0, 2)
	incr("a", -0.5, 100, 0, 1.5) // init only matters when missing
	incr("b", 5, 10, 0, 15)
	mustGet(t, m, "b", NumberValue(15))

	// TTL applies on creation only; later increments keep it.
	incr("c", 1, 0, 10*time.Second, 1)
	clock.Advance(5 * time.Second)
	incr("c", 1, 0, time.Hour, 2)
	clock.Advance(5 * time.Second)
	mustMiss(t, m, "c")
	incr("c", 1, 7, 0, 8) // expired: recreated from init, now without TTL
	clock.Advance(100 * time.Hour)
	incr("c", 1, 0, 0, 9)

	// Non-numbers are an error and stay untouched.
	m.Set("s", StringValue("x"), 0)
	m.Set("t", BoolValue(true), 0)
	for _, key := range []string{"s", "t"} {
		if _, err := m.Incr(key, 1, 0, 0); !errors.Is(err, ErrNotNumber) {
			t.Errorf("Incr(%q) error = %v, want ErrNotNumber", key, err)
		} else if !strings.Contains(err.Error(), `map "incr" key "`+key+`" holds a `) {
			t.Errorf("Incr(%q) error %q does not name map, key and kind", key, err)
		}
	}
	mustGet(t, m, "s", StringValue("x"))
	// An expired non-number is as good as missing.
	m.Set("old", StringValue("x"), time.Second)
	clock.Advance(time.Second)
	incr("old", 2, 1, 0, 3)
}

func TestErrFull(t *testing.T) {
	s, clock := newTestStore(3)
	m := s.Map("full")
	for i, key := range []string{"a", "b", "c"} {
		if err := m.Set(key, NumberValue(float64(i)), 0); err != nil {
			t.Fatalf("Set(%q): %v", key, err)
		}
	}
	if err := m.Set("d", NumberValue(3), 0); !errors.Is(err, ErrFull) {
		t.Fatalf("Set on a full map: %v, want ErrFull", err)
	} else if want := `state: map full (map "full", limit 3 keys)`; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if _, err := m.Incr("d", 1, 0, 0); !errors.Is(err, ErrFull) {
		t.Fatalf("Incr of a new key on a full map: %v, want ErrFull", err)
	}
	mustMiss(t, m, "d")
	// Existing keys can still be written.
	if err := m.Set("a", StringValue("new"), 0); err != nil {
		t.Errorf("overwrite on a full map: %v", err)
	}
	if _, err := m.Incr("b", 1, 0, 0); err != nil {
		t.Errorf("Incr of an existing key on a full map: %v", err)
	}
	// Deleting makes room.
	m.Delete("c")
	if err := m.Set("d", NumberValue(3), 0); err != nil {
		t.Errorf("Set after Delete: %v", err)
	}
	if m.Len() != 3 {
		t.Errorf("Len = %d, want 3", m.Len())
	}
	// Other maps have their own limit.
	if err := s.Map("other").Set("x", NumberValue(1), 0); err != nil {
		t.Errorf("Set in another map: %v", err)
	}

	// Expired entries are evicted to make room.
	m2 := s.Map("ttl")
	m2.Set("a", NumberValue(1), time.Second)
	m2.Set("b", NumberValue(2), 2*time.Second)
	m2.Set("c", NumberValue(3), 0)
	clock.Advance(1500 * time.Millisecond) // a expired
	if err := m2.Set("d", NumberValue(4), 0); err != nil {
		t.Fatalf("Set with an expired entry to evict: %v", err)
	}
	mustGet(t, m2, "b", NumberValue(2))
	// b expires at 2s, but the last eviction scan (1.5s) was under a
	// second ago: no new scan yet, so the map is still full.
	clock.Advance(700 * time.Millisecond)
	if err := m2.Set("e", NumberValue(5), 0); !errors.Is(err, ErrFull) {
		t.Fatalf("Set within the eviction interval: %v, want ErrFull", err)
	}
	clock.Advance(300 * time.Millisecond)
	if err := m2.Set("e", NumberValue(5), 0); err != nil {
		t.Fatalf("Set after the eviction interval: %v", err)
	}
	for _, key := range []string{"c", "d", "e"} {
		if _, ok := m2.Get(key); !ok {
			t.Errorf("%q missing after eviction", key)
		}
	}
	// Nothing left to expire: full again.
	clock.Advance(time.Hour)
	if err := m2.Set("f", NumberValue(6), 0); !errors.Is(err, ErrFull) {
		t.Fatalf("Set on a map full of live entries: %v, want ErrFull", err)
	}

	// While no entry can have expired, a full map is not scanned, so the
	// scan interval is not used up: the first expiry frees room at once.
	m3 := s.Map("noscan")
	m3.Set("a", NumberValue(1), time.Second)
	m3.Set("b", NumberValue(2), 0)
	m3.Set("c", NumberValue(3), 0)
	clock.Advance(500 * time.Millisecond)
	if err := m3.Set("d", NumberValue(4), 0); !errors.Is(err, ErrFull) {
		t.Fatalf("Set before any expiry: %v, want ErrFull", err)
	}
	clock.Advance(500 * time.Millisecond)
	if err := m3.Set("d", NumberValue(4), 0); err != nil {
		t.Fatalf("Set right after the first expiry: %v", err)
	}
}

func TestByteLimits(t *testing.T) {
	clock := newFakeClock()
	s := NewStore(clock.Now, Limits{MaxBytes: 3*EntryOverhead + 30, MaxValue: 20})
	m := s.Map("bytes")
	if err := m.Set("k", StringValue(strings.Repeat("x", 21)), 0); !errors.Is(err, ErrTooLong) {
		t.Fatalf("Set of a 21-byte value with MaxValue 20: %v, want ErrTooLong", err)
	} else if want := `state: key or value too long (map "bytes": value of 21 bytes, limit 20)`; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if err := m.Set(strings.Repeat("k", 21), NumberValue(1), 0); !errors.Is(err, ErrTooLong) {
		t.Fatalf("Set with a 21-byte key: %v, want ErrTooLong", err)
	}
	if _, err := m.Incr(strings.Repeat("k", 21), 1, 0, 0); !errors.Is(err, ErrTooLong) {
		t.Fatalf("Incr with a 21-byte key: %v, want ErrTooLong", err)
	}
	mustMiss(t, m, "k")
	// a: 1+20, b: 1+0: 22 of the 30 bytes beyond the overheads.
	if err := m.Set("a", StringValue(strings.Repeat("x", 20)), time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Incr("b", 1, 0, 0); err != nil {
		t.Fatal(err)
	}
	if got, want := m.Bytes(), int64(2*EntryOverhead+22); got != want {
		t.Errorf("Bytes = %d, want %d", got, want)
	}
	// c with a 9-byte value would make 32.
	if err := m.Set("c", StringValue("123456789"), 0); !errors.Is(err, ErrFull) {
		t.Fatalf("Set past MaxBytes: %v, want ErrFull", err)
	} else if want := fmt.Sprintf(`state: map full (map "bytes", limit %d bytes)`, 3*EntryOverhead+30); err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if err := m.Set("c", StringValue("1234567"), 0); err != nil {
		t.Fatalf("Set up to MaxBytes: %v", err)
	}
	// Growing an existing value counts too; shrinking makes room.
	if err := m.Set("b", StringValue("xx"), 0); !errors.Is(err, ErrFull) {
		t.Fatalf("growing b past MaxBytes: %v, want ErrFull", err)
	}
	mustGet(t, m, "b", NumberValue(1))
	if err := m.Set("a", StringValue("x"), time.Second); err != nil {
		t.Fatal(err)
	}
	if err := m.Set("b", StringValue("xx"), 0); err != nil {
		t.Fatalf("growing b after a shrank: %v", err)
	}
	// An expired string is dropped to make room, and Delete gives back.
	clock.Advance(2 * time.Second)
	if err := m.Set("d", StringValue(strings.Repeat("y", 18)), 0); err != nil {
		t.Fatalf("Set that fits once the expired a is dropped: %v", err)
	}
	mustMiss(t, m, "a")
	if got, want := m.Bytes(), int64(3*EntryOverhead+30); got != want {
		t.Errorf("Bytes after evicting a = %d, want %d", got, want)
	}
	m.Delete("d")
	m.Delete("b")
	m.Delete("c")
	if got := m.Bytes(); got != 0 || m.Len() != 0 {
		t.Errorf("empty map counts %d bytes, %d keys", got, m.Len())
	}

	// Bucket keys count too.
	b := mustBucket(t, s, "rl", 1, 1)
	if b.Take(strings.Repeat("k", 21)) {
		t.Error("a bucket took a key over MaxValue")
	}
	for _, k := range []string{strings.Repeat("a", 15), strings.Repeat("b", 15)} {
		if !b.Take(k) {
			t.Fatalf("Take(%q) refused", k)
		}
	}
	if b.Take("c") {
		t.Error("a bucket family past MaxBytes took a new key")
	}
}

func TestDefaultLimit(t *testing.T) {
	s := NewStore(nil, Limits{})
	if want := (Limits{DefaultMaxKeys, DefaultMaxBytes, DefaultMaxValue}); s.limits != want {
		t.Errorf("limits = %+v, want %+v", s.limits, want)
	}
	// A nil clock means the real one.
	m := s.Map("real")
	m.Set("k", NumberValue(1), time.Hour)
	mustGet(t, m, "k", NumberValue(1))
}

func TestCounter(t *testing.T) {
	s, _ := newTestStore(0)
	c := s.Counter("pkts")
	if c != s.Counter("pkts") {
		t.Fatal("Counter(same name) returned a different counter")
	}
	if got := c.Add(5); got != 5 {
		t.Errorf("Add(5) = %d", got)
	}
	if got := c.Add(-7); got != -2 {
		t.Errorf("Add(-7) = %d", got)
	}
	if c.Get() != -2 || s.Counter("other").Get() != 0 {
		t.Errorf("Get = %d, other = %d", c.Get(), s.Counter("other").Get())
	}
}

func mustBucket(t *testing.T, s *Store, name string, rate, burst float64) *Bucket {
	t.Helper()
	b, err := s.Bucket(name, rate, burst)
	if err != nil {
		t.Fatalf("Bucket(%q, %v, %v): %v", name, rate, burst, err)
	}
	return b
}

func takes(b *Bucket, key string, n int) (ok int) {
	for range n {
		if b.Take(key) {
			ok++
		}
	}
	return ok
}

func TestBucketRefill(t *testing.T) {
	s, clock := newTestStore(0)
	b := mustBucket(t, s, "rl", 2, 3)
	for i := range 3 {
		if !b.Take("k") {
			t.Fatalf("take %d of a full bucket failed", i+1)
		}
	}
	if b.Take("k") {
		t.Fatal("4th take succeeded; burst is 3")
	}
	clock.Advance(500 * time.Millisecond) // 0.5 s * 2/s = 1 token
	if !b.Take("k") {
		t.Fatal("take after 0.5s failed")
	}
	if b.Take("k") {
		t.Fatal("second take after 0.5s succeeded")
	}
	clock.Advance(250 * time.Millisecond) // half a token
	if b.Take("k") {
		t.Fatal("take with half a token succeeded")
	}
	clock.Advance(250 * time.Millisecond)
	if !b.Take("k") {
		t.Fatal("take after two half tokens failed")
	}
	// Refill caps at burst.
	clock.Advance(time.Hour)
	if got := takes(b, "k", 10); got != 3 {
		t.Errorf("after an hour idle: %d takes succeeded, want 3", got)
	}
	// Keys are independent.
	if got := takes(b, "other", 10); got != 3 {
		t.Errorf("new key: %d takes succeeded, want 3", got)
	}
	// A clock stepping back refills nothing and does not break later refills.
	clock.Advance(-time.Minute)
	if b.Take("k") {
		t.Error("take after the clock stepped back succeeded")
	}
	clock.Advance(time.Minute + 500*time.Millisecond)
	if !b.Take("k") || b.Take("k") {
		t.Error("after the clock caught up, want exactly one token")
	}
	// ... nor does it take tokens away.
	b.Take("back") // 2 left
	clock.Advance(-10 * time.Second)
	if got := takes(b, "back", 5); got != 2 {
		t.Errorf("after the clock stepped back: %d takes, want 2", got)
	}
}

func TestBucketTakeN(t *testing.T) {
	s, clock := newTestStore(0)
	b := mustBucket(t, s, "bytes", 1000, 1500)
	if !b.TakeN("k", 1000) {
		t.Fatal("TakeN(1000) of 1500 failed")
	}
	if b.TakeN("k", 600) {
		t.Fatal("TakeN(600) of 500 succeeded")
	}
	if !b.TakeN("k", 500) { // a failed take costs nothing
		t.Fatal("TakeN(500) of 500 failed")
	}
	if b.TakeN("new", 1501) {
		t.Error("TakeN above burst succeeded")
	}
	if !b.TakeN("k", 0) || !b.TakeN("k", -5) || b.TakeN("k", math.NaN()) {
		t.Error("TakeN(0) and (-5) must succeed, TakeN(NaN) must fail")
	}
	clock.Advance(100 * time.Millisecond)
	if !b.TakeN("k", 100) || b.TakeN("k", 0.001) {
		t.Error("after 0.1s at 1000/s want exactly 100 tokens")
	}
}

func TestBucketParameters(t *testing.T) {
	s, _ := newTestStore(0)
	b := mustBucket(t, s, "rl", 10, 20)
	if b2 := mustBucket(t, s, "rl", 10, 20); b2 != b {
		t.Error("same name and parameters returned a different bucket")
	}
	if b.Rate() != 10 || b.Burst() != 20 {
		t.Errorf("Rate, Burst = %v, %v", b.Rate(), b.Burst())
	}
	for _, p := range [][2]float64{{10, 21}, {11, 20}} {
		_, err := s.Bucket("rl", p[0], p[1])
		if err == nil {
			t.Errorf("Bucket(rl, %v, %v) with existing (10, 20) succeeded", p[0], p[1])
		} else if want := fmt.Sprintf(`state: bucket "rl" exists with rate 10/s, burst 20; asked for rate %v/s, burst %v`, p[0], p[1]); err.Error() != want {
			t.Errorf("error %q, want %q", err, want)
		}
	}
	for _, p := range [][2]float64{{0, 5}, {-1, 5}, {1, 0.5}, {math.NaN(), 5}, {1, math.NaN()}, {math.Inf(1), 5}, {1, math.Inf(1)}} {
		if _, err := s.Bucket("bad", p[0], p[1]); err == nil {
			t.Errorf("Bucket(bad, %v, %v) succeeded", p[0], p[1])
		}
	}
	// A failed request creates nothing.
	if b, err := s.Bucket("bad", 1, 1); err != nil || b.Rate() != 1 {
		t.Errorf("Bucket(bad, 1, 1) = %v, %v", b, err)
	}
}

func TestBucketFull(t *testing.T) {
	s, clock := newTestStore(2)
	b := mustBucket(t, s, "rl", 1, 2)
	b.Take("a")
	b.Take("b")
	if b.Take("c") {
		t.Fatal("new key in a full family got a token")
	}
	if !b.Take("a") {
		t.Fatal("existing key in a full family was refused")
	}
	// After 2s both buckets are full again, hence evictable.
	clock.Advance(2 * time.Second)
	if !b.Take("c") {
		t.Fatal("new key refused although idle buckets could be evicted")
	}
	if b.Len() != 1 {
		t.Errorf("Len = %d, want 1", b.Len())
	}
}

func TestSweepAndStats(t *testing.T) {
	s, clock := newTestStore(0)
	m := s.Map("m")
	m.Set("a", NumberValue(1), time.Second)
	m.Set("b", NumberValue(2), 3*time.Second)
	m.Set("c", NumberValue(3), 0)
	b := mustBucket(t, s, "rl", 1, 2)
	b.Take("drained")
	b.Take("drained")
	b.Take("half")
	s.Counter("hits").Add(7)

	want := map[string]int{"map:m": 3, "bucket:rl": 2, "counter:hits": 7}
	if got := s.Stats(); !maps.Equal(got, want) {
		t.Errorf("Stats = %v, want %v", got, want)
	}
	clock.Advance(1500 * time.Millisecond)
	s.Sweep()
	// a expired; "half" has refilled to 2 (full), "drained" has 1.5.
	want = map[string]int{"map:m": 2, "bucket:rl": 1, "counter:hits": 7}
	if got := s.Stats(); !maps.Equal(got, want) {
		t.Errorf("after Sweep: Stats = %v, want %v", got, want)
	}
	mustMiss(t, m, "a")
	mustGet(t, m, "b", NumberValue(2))
	clock.Advance(2 * time.Second)
	s.Sweep()
	if m.Len() != 1 || b.Len() != 0 {
		t.Errorf("after second Sweep: map Len %d, bucket Len %d; want 1, 0", m.Len(), b.Len())
	}
	// Swept buckets start full again.
	if got := takes(b, "drained", 5); got != 2 {
		t.Errorf("swept key: %d takes, want 2", got)
	}
}

// TestConcurrent runs every operation from many goroutines; run it with
// -race. Totals must come out exact.
func TestConcurrent(t *testing.T) {
	s, clock := newTestStore(0)
	const workers, rounds = 8, 2000
	b := mustBucket(t, s, "rl", 1, 100)
	var wg sync.WaitGroup
	var taken atomic.Int64
	got := make([]*Map, workers)
	for w := range workers {
		wg.Go(func() {
			m := s.Map("shared") // racing get-or-create
			got[w] = m
			own := "w" + strconv.Itoa(w)
			for i := range rounds {
				if _, err := m.Incr("hot", 1, 0, 0); err != nil {
					t.Error(err)
					return
				}
				if _, err := m.Incr(own, 2, 0, time.Hour); err != nil {
					t.Error(err)
					return
				}
				key := "k" + strconv.Itoa(i%50)
				v := NumberValue(float64(i))
				if i%3 == 0 { // values of changing size
					v = StringValue(strings.Repeat("v", i%7))
				}
				if err := m.Set(key, v, time.Minute); err != nil {
					t.Error(err)
					return
				}
				m.Get(key)
				if i%10 == 0 {
					m.Delete(key)
				}
				s.Counter("c").Add(1)
				if b.Take("shared") {
					taken.Add(1)
				}
				if i%500 == 0 {
					s.Sweep()
					s.Stats()
				}
			}
		})
	}
	wg.Wait()
	for _, m := range got[1:] {
		if m != got[0] {
			t.Fatal("concurrent Map(name) calls returned different maps")
		}
	}
	m := s.Map("shared")
	mustGet(t, m, "hot", NumberValue(workers*rounds))
	for w := range workers {
		mustGet(t, m, "w"+strconv.Itoa(w), NumberValue(2*rounds))
	}
	if got := s.Counter("c").Get(); got != workers*rounds {
		t.Errorf("counter = %d, want %d", got, workers*rounds)
	}
	// The clock never moved: exactly burst tokens were handed out.
	if taken.Load() != 100 {
		t.Errorf("bucket handed out %d tokens, want 100", taken.Load())
	}
	// Len and Bytes match the entries that are really there.
	n, bytes := 0, int64(0)
	for i := range m.shards {
		n += len(m.shards[i].m)
		for k, e := range m.shards[i].m {
			bytes += e.cost(k)
		}
	}
	if m.Len() != n || m.Bytes() != bytes {
		t.Errorf("Len = %d, Bytes = %d, but shards hold %d entries of %d bytes", m.Len(), m.Bytes(), n, bytes)
	}
	clock.Advance(2 * time.Hour)
	s.Sweep()
	if m.Len() != 1 || m.Bytes() != int64(len("hot"))+EntryOverhead { // only "hot" has no TTL
		t.Errorf("after expiry and Sweep: Len = %d, Bytes = %d; want 1, %d", m.Len(), m.Bytes(), len("hot")+EntryOverhead)
	}
}

// TestConcurrentFull checks the key limit holds exactly under concurrent
// inserts into different shards.
func TestConcurrentFull(t *testing.T) {
	s, _ := newTestStore(100)
	m := s.Map("m")
	var wg sync.WaitGroup
	var stored, full atomic.Int64
	for w := range 4 {
		wg.Go(func() {
			for i := range 100 {
				err := m.Set(fmt.Sprintf("%d-%d", w, i), NumberValue(1), 0)
				switch {
				case err == nil:
					stored.Add(1)
				case errors.Is(err, ErrFull):
					full.Add(1)
				default:
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if stored.Load() != 100 || full.Load() != 300 || m.Len() != 100 {
		t.Errorf("stored %d, full %d, Len %d; want 100, 300, 100", stored.Load(), full.Load(), m.Len())
	}
}

func TestNoAllocs(t *testing.T) {
	// The real clock: its cost is part of the hot path.
	s := NewStore(nil, Limits{})
	m := s.Map("m")
	m.Set("num", NumberValue(1), 0)
	m.Set("ttl", NumberValue(1), time.Hour)
	m.Set("str", StringValue("hello"), time.Hour)
	b, err := s.Bucket("rl", 1e9, 1e9)
	if err != nil {
		t.Fatal(err)
	}
	b.Take("k")
	c := s.Counter("c")
	for name, f := range map[string]func(){
		"Get":          func() { m.Get("num") },
		"Get/ttl":      func() { m.Get("ttl") },
		"Get/string":   func() { m.Get("str") },
		"Get/missing":  func() { m.Get("missing") },
		"Incr":         func() { m.Incr("num", 1, 0, 0) },
		"Incr/ttl":     func() { m.Incr("ttl", 1, 0, time.Minute) },
		"Set/existing": func() { m.Set("num", NumberValue(2), 0) },
		"Set/string":   func() { m.Set("str", StringValue("world"), time.Hour) },
		"Take":         func() { b.Take("k") },
		"TakeN":        func() { b.TakeN("k", 3) },
		"Counter.Add":  func() { c.Add(1) },
		"Store.Map":    func() { s.Map("m") },
	} {
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s allocates %v times per call", name, n)
		}
	}
}

func benchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
	}
	return keys
}

// benchClocks runs f with the real clock and with a CoarseClock, whose
// difference is the cost of time.Now on this machine.
func benchClocks(b *testing.B, f func(b *testing.B, clock Clock)) {
	b.Run("clock=time.Now", func(b *testing.B) { f(b, time.Now) })
	b.Run("clock=coarse", func(b *testing.B) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		f(b, CoarseClock(ctx, nil, time.Millisecond))
	})
}

func BenchmarkMapIncr(b *testing.B) {
	benchClocks(b, func(b *testing.B, clock Clock) {
		m := NewStore(clock, Limits{}).Map("m")
		keys := benchKeys(1024)
		for _, k := range keys {
			m.Incr(k, 1, 0, time.Hour) // with a TTL, so Incr reads the clock
		}
		b.Run("single", func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				m.Incr(keys[i&1023], 1, 0, 0)
				i++
			}
		})
		b.Run("parallel", func(b *testing.B) {
			b.ReportAllocs()
			var seed atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				i := int(seed.Add(512))
				for pb.Next() {
					m.Incr(keys[i&1023], 1, 0, 0)
					i++
				}
			})
		})
		b.Run("parallel-samekey", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					m.Incr(keys[0], 1, 0, 0)
				}
			})
		})
	})
}

func BenchmarkBucketTake(b *testing.B) {
	benchClocks(b, func(b *testing.B, clock Clock) {
		bk, err := NewStore(clock, Limits{}).Bucket("rl", 1e6, 1e6)
		if err != nil {
			b.Fatal(err)
		}
		keys := benchKeys(1024)
		for _, k := range keys {
			bk.Take(k)
		}
		b.Run("single", func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				bk.Take(keys[i&1023])
				i++
			}
		})
		b.Run("parallel", func(b *testing.B) {
			b.ReportAllocs()
			var seed atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				i := int(seed.Add(512))
				for pb.Next() {
					bk.Take(keys[i&1023])
					i++
				}
			})
		})
	})
}

func BenchmarkMapGet(b *testing.B) {
	benchClocks(b, func(b *testing.B, clock Clock) {
		m := NewStore(clock, Limits{}).Map("m")
		keys := benchKeys(1024)
		for _, k := range keys {
			m.Set(k, NumberValue(1), time.Hour)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			m.Get(keys[i&1023])
			i++
		}
	})
}

// SetUntil keeps the expiry it is given, even with a clock that moves
// between two readings (the system clock while the engine's watchdog
// sleeps).
func TestSetUntilKeepsExpiry(t *testing.T) {
	base := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	var ticks int64
	clock := func() time.Time { ticks++; return base.Add(time.Duration(ticks) * time.Microsecond) }
	s := NewStore(clock, Limits{})
	m := s.Map("bans")
	exp := base.Add(time.Hour)
	if err := m.SetUntil("10.0.0.1", Value{Kind: Bool, Bool: true}, exp); err != nil {
		t.Fatal(err)
	}
	es := m.Entries()
	if len(es) != 1 || !es[0].Expires.Equal(exp) {
		t.Fatalf("entries %+v, want one expiring at %v", es, exp)
	}
}

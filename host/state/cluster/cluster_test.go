package cluster

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/luafw/luafw/host/state"
)

func TestMapWritesReachOtherNodes(t *testing.T) {
	r := startRedis(t)
	a, b := newNode(t, r, "a", nil), newNode(t, r, "b", nil)
	eventually(t, 5*time.Second, "a connects", connected(a))
	eventually(t, 5*time.Second, "b connects", connected(b))
	ma, mb := a.Map("ban"), b.Map("ban")
	// Give b's subscription a moment to be in place before the write.
	time.Sleep(2 * a.SyncInterval())

	if err := ma.Set("192.0.2.7", state.BoolValue(true), time.Minute); err != nil {
		t.Fatal(err)
	}
	d := eventually(t, 5*time.Second, "ban visible on b", func() bool { _, ok := mb.Get("192.0.2.7"); return ok })
	t.Logf("a set -> b sees it: %v (sync interval %v)", d, a.SyncInterval())

	if _, err := ma.Incr("hits", 2, 10, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := mb.Incr("hits", 3, 10, time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, m := range []state.MapHandle{ma, mb} {
		eventually(t, 5*time.Second, "increments from both nodes add up", func() bool {
			v, ok := m.Get("hits")
			return ok && v.Num == 15
		})
	}

	mb.Delete("192.0.2.7")
	eventually(t, 5*time.Second, "delete visible on a", func() bool { _, ok := ma.Get("192.0.2.7"); return !ok })

	// A node that starts later loads what Redis holds, TTL included.
	if err := ma.Set("name", state.StringValue("gw1"), 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "name reaches b", func() bool { _, ok := mb.Get("name"); return ok })
	c := newNode(t, r, "c", nil)
	mc := c.Map("ban")
	eventually(t, 5*time.Second, "late node loads the map", func() bool {
		v, ok := mc.Get("name")
		h, ok2 := mc.Get("hits")
		return ok && v == state.StringValue("gw1") && ok2 && h.Num == 15
	})
}

func TestCountersAddAcrossNodes(t *testing.T) {
	r := startRedis(t)
	a, b := newNode(t, r, "a", nil), newNode(t, r, "b", nil)
	ca, cb := a.Counter("conns"), b.Counter("conns")
	for range 100 {
		ca.Add(1)
		cb.Add(2)
	}
	for _, c := range []state.CounterHandle{ca, cb} {
		eventually(t, 5*time.Second, "both nodes see 300", func() bool { return c.Get() == 300 })
	}
}

// TestBucketHoldsClusterWide takes tokens as fast as it can on two nodes
// and checks the total against the documented bound
// rate·(T + (N−1)·d) + N·burst.
func TestBucketHoldsClusterWide(t *testing.T) {
	r := startRedis(t)
	a, b := newNode(t, r, "a", nil), newNode(t, r, "b", nil)
	eventually(t, 5*time.Second, "a connects", connected(a))
	eventually(t, 5*time.Second, "b connects", connected(b))
	const rate, burst = 100.0, 10.0
	ba, err := a.Bucket("syn", rate, burst)
	if err != nil {
		t.Fatal(err)
	}
	bb, err := b.Bucket("syn", rate, burst)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * a.SyncInterval())
	admitted, elapsed := hammer(2*time.Second, ba, bb)
	d := 3 * a.SyncInterval() // interval plus delivery, with room for a loaded machine
	bound := rate*(elapsed.Seconds()+d.Seconds()) + 2*burst
	t.Logf("admitted %d in %v across 2 nodes: %.1f/s for a limit of %v/s (bound %.0f)",
		admitted, elapsed, float64(admitted)/elapsed.Seconds(), rate, bound)
	if float64(admitted) > bound {
		t.Errorf("admitted %d > bound %.0f", admitted, bound)
	}
	if float64(admitted) < rate*elapsed.Seconds()/2 {
		t.Errorf("admitted %d: far below the limit, the charges over-count", admitted)
	}
}

// hammer takes one token per 200µs from key "k" of each bucket for d,
// and returns how many were granted.
func hammer(d time.Duration, bs ...state.BucketHandle) (int, time.Duration) {
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		for _, b := range bs {
			if b.TakeN("k", 1) {
				n++
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
	return n, time.Since(start)
}

// TestRedisOutage kills Redis under two nodes: they keep deciding on local
// state with the fallback share, queue their writes, and converge when it
// returns.
func TestRedisOutage(t *testing.T) {
	r := startRedis(t)
	share := func(o *Options) { o.FallbackShare = 0.5 }
	a, b := newNode(t, r, "a", share), newNode(t, r, "b", share)
	eventually(t, 5*time.Second, "a connects", connected(a))
	eventually(t, 5*time.Second, "b connects", connected(b))
	ma, mb := a.Map("ban"), b.Map("ban")
	const rate, burst = 100.0, 10.0
	ba, _ := a.Bucket("syn", rate, burst)
	bb, _ := b.Bucket("syn", rate, burst)

	r.stop()
	eventually(t, 10*time.Second, "a notices", func() bool { return !a.Stats().Connected })
	eventually(t, 10*time.Second, "b notices", func() bool { return !b.Stats().Connected })
	if err := ma.Set("198.51.100.9", state.BoolValue(true), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, ok := ma.Get("198.51.100.9"); !ok || !v.Bool {
		t.Fatal("a lost its own write during the outage")
	}
	admitted, elapsed := hammer(time.Second, ba, bb)
	// Each node alone: share·(rate·T + burst).
	bound := 2 * 0.5 * (rate*elapsed.Seconds() + burst)
	t.Logf("outage: admitted %d in %v across 2 nodes with fallback share 0.5 (bound %.0f)", admitted, elapsed, bound)
	if float64(admitted) > bound+1 {
		t.Errorf("outage: admitted %d > %.0f", admitted, bound)
	}

	restart := time.Now()
	r.start()
	eventually(t, 20*time.Second, "a reconnects", connected(a))
	eventually(t, 20*time.Second, "b reconnects", connected(b))
	t.Logf("both reconnected %v after redis-server was started", time.Since(restart).Round(time.Millisecond))
	eventually(t, 10*time.Second, "a's outage write reaches b", func() bool { _, ok := mb.Get("198.51.100.9"); return ok })
	if s := a.Stats(); s.Disconnects == 0 || s.Reconnects == 0 {
		t.Errorf("stats do not count the outage: %+v", s)
	}
}

// TestStartsWithoutRedis: a node whose Redis is down at start runs on
// local state with the fallback share, says so once, and joins when Redis
// comes up.
func TestStartsWithoutRedis(t *testing.T) {
	r := startRedis(t)
	r.stop()
	var logs syncLog
	a := newNode(t, r, "a", func(o *Options) {
		o.FallbackShare = 0.5
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	b, err := a.Bucket("syn", 1, 4)
	if err != nil {
		t.Fatal(err)
	}
	m := a.Map("ban")
	if err := m.Set("x", state.BoolValue(true), 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the outage is logged", func() bool { return strings.Contains(logs.String(), "redis unreachable") })
	took := 0
	for range 3 {
		if b.TakeN("k", 1) {
			took++
		}
	}
	if took != 2 {
		t.Errorf("%d of 3 takes from a fallback bucket of 0.5 × burst 4 at 1/s; want 2", took)
	}
	r.start()
	eventually(t, 20*time.Second, "a connects", connected(a))
	if n := strings.Count(logs.String(), "redis unreachable"); n != 1 {
		t.Errorf("the outage was logged %d times:\n%s", n, logs.String())
	}
	// The write made while down reached Redis: a new node loads it.
	c := newNode(t, r, "c", nil)
	eventually(t, 10*time.Second, "the write made before Redis came up is in Redis", func() bool {
		_, ok := c.Map("ban").Get("x")
		return ok
	})
	if s := a.Stats(); s.Disconnects != 1 || s.Reconnects != 1 {
		t.Errorf("stats %+v; want one disconnect and one reconnect", s)
	}
}

type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

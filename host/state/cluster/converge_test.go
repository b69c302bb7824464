package cluster

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/luafw/luafw/host/state"
)

// The convergence tests: two nodes on one real redis-server write to the
// same map through restarts, outages and concurrent writes to the same
// keys; afterwards both copies and Redis must hold the same entries.

// redisAt is a Redis server a test reads.
type redisAt struct{ addr, password string }

func (a redisAt) client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: a.addr, Password: a.password, DisableIdentity: true})
}

// contents is a map's live entries, values encoded as in Redis.
func contents(m *Map) map[string]string {
	out := map[string]string{}
	for _, e := range m.local.Entries() {
		out[e.Key] = encodeValue(e.Value)
	}
	return out
}

// redisContents is what Redis holds for map name under prefix: its live
// entries, tombstones left out.
func redisContents(t *testing.T, at redisAt, prefix, name string) map[string]string {
	t.Helper()
	c := at.client()
	defer c.Close()
	ctx := context.Background()
	p := mapKeyPrefix(prefix, name)
	out := map[string]string{}
	it := c.Scan(ctx, 0, globEscape(p)+"*", 1000).Iterator()
	var keys []string
	for it.Next(ctx) {
		keys = append(keys, it.Val())
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	for len(keys) > 0 {
		batch := keys[:min(len(keys), 1000)]
		keys = keys[len(batch):]
		pipe := c.Pipeline()
		cmds := make([]*redis.SliceCmd, len(batch))
		for i, k := range batch {
			cmds[i] = pipe.HMGet(ctx, k, "v", "d")
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		for i, k := range batch {
			f := cmds[i].Val()
			if len(f) == 2 && f[1] == nil {
				if v, ok := f[0].(string); ok {
					out[strings.TrimPrefix(k, p)] = v
				}
			}
		}
	}
	return out
}

// diff describes how a differs from b, in a few lines.
func diff(a, b map[string]string) string {
	var lines []string
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			lines = append(lines, fmt.Sprintf("%q: %q vs %q", k, v, w))
		}
	}
	for k, w := range b {
		if _, ok := a[k]; !ok {
			lines = append(lines, fmt.Sprintf("%q: absent vs %q", k, w))
		}
	}
	if len(lines) > 5 {
		lines = append(lines[:5], fmt.Sprintf("... %d more", len(lines)-5))
	}
	return strings.Join(lines, "; ")
}

// explain shows, for one key that differs, its version on every node and
// in Redis, and each node's stats.
func explain(at redisAt, prefix, name string, got, want map[string]string, ms []*Map) string {
	var key string
	for k, v := range got {
		if want[k] != v {
			key = k
			break
		}
	}
	if key == "" {
		for k := range want {
			if _, ok := got[k]; !ok {
				key = k
				break
			}
		}
	}
	c := at.client()
	defer c.Close()
	h, _ := c.HGetAll(context.Background(), mapKeyPrefix(prefix, name)+key).Result()
	seq, _ := c.Get(context.Background(), mapSeqKey(prefix, name)).Result()
	n, _ := c.DBSize(context.Background()).Result()
	out := fmt.Sprintf("key %q in Redis %v (map seq %s, dbsize %d)", key, h, seq, n)
	for i, m := range ms {
		sh := m.metaShard(key)
		sh.mu.Lock()
		mt, ok := sh.m[key]
		sh.mu.Unlock()
		m.mu.Lock()
		last := m.lastSeq
		m.mu.Unlock()
		out += fmt.Sprintf("; node %d (id %d): meta %+v %v, lastSeq %d, %+v", i, m.s.id, mt, ok, last, m.s.Stats())
	}
	return out
}

// converge waits until every map and Redis hold the same entries, and
// returns how long that took; it fails the test after limit.
func converge(t *testing.T, at redisAt, prefix, name string, limit time.Duration, ms ...*Map) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		want := redisContents(t, at, prefix, name)
		same := true
		var why string
		for i, m := range ms {
			got := contents(m)
			if !maps.Equal(got, want) {
				same = false
				why = fmt.Sprintf("node %d (%d keys) vs Redis (%d keys): %s; %s", i, len(got), len(want), diff(got, want), explain(at, prefix, name, got, want, ms))
				break
			}
		}
		if same {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("not converged within %v: %s", limit, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRestartDuringWriteStorm restarts node B while node A writes 20,000
// keys (and deletes some, and B writes some of the same keys): afterwards
// A, B and Redis hold the same entries. Before versions and the
// loss-free load, B ended thousands of keys short for good.
func TestRestartDuringWriteStorm(t *testing.T) {
	r := startRedis(t)
	prefix := fmt.Sprintf("t%d:", r.port)
	a := newNode(t, r, "a", nil)
	eventually(t, 5*time.Second, "a connects", connected(a))
	open := func() *Store {
		s, err := New(Options{Addrs: []string{r.addr}, Prefix: prefix, Node: "b"})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	b := open()
	ma := a.Map("storm").(*Map)
	// 20,000 keys first, so that B's load after its restart takes a while
	// and the storm's writes reach B during it.
	for i := range 20_000 {
		_ = ma.Set(fmt.Sprintf("pre%d", i), state.BoolValue(true), time.Hour)
	}
	converge(t, redisAt{addr: r.addr}, prefix, "storm", 10*time.Second, ma, b.Map("storm").(*Map))
	const keys = 20_000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range keys {
			if err := ma.Set(fmt.Sprintf("k%d", i), state.NumberValue(float64(i)), time.Hour); err != nil {
				t.Error(err)
				return
			}
			if i%7 == 0 && i > 100 {
				ma.Delete(fmt.Sprintf("k%d", i-100))
			}
			if i%100 == 0 {
				time.Sleep(3 * time.Millisecond) // about 1 s in all
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	b.Close()
	time.Sleep(100 * time.Millisecond)
	b = open()
	defer b.Close()
	mb := b.Map("storm").(*Map)
	for i := 0; i < keys; i += 50 { // B writes some of A's keys meanwhile
		_ = mb.Set(fmt.Sprintf("k%d", i), state.StringValue("b"), time.Hour)
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	took := converge(t, redisAt{addr: r.addr}, prefix, "storm", 20*time.Second, ma, mb)
	t.Logf("B restarted during a storm of %d writes: A, B and Redis equal (%d keys) %v after the storm ended; B: %+v",
		keys, len(contents(ma)), took.Round(time.Millisecond), b.Stats())
}

// TestConcurrentWritesConverge writes one key on both nodes at once, set
// against set and delete against set, for many rounds: every node and
// Redis end with the same value of every key. Before versions, each node
// kept the other's write: 6 of 6 rounds diverged for good.
func TestConcurrentWritesConverge(t *testing.T) {
	r := startRedis(t)
	prefix := fmt.Sprintf("t%d:", r.port)
	a, b := newNode(t, r, "a", nil), newNode(t, r, "b", nil)
	eventually(t, 5*time.Second, "a connects", connected(a))
	eventually(t, 5*time.Second, "b connects", connected(b))
	ma, mb := a.Map("race").(*Map), b.Map("race").(*Map)
	const rounds = 200
	for i := range rounds {
		_ = ma.Set(fmt.Sprintf("k%d", i), state.BoolValue(true), time.Hour)
	}
	converge(t, redisAt{addr: r.addr}, prefix, "race", 10*time.Second, ma, mb)
	var start sync.WaitGroup
	var wg sync.WaitGroup
	start.Add(1)
	for _, side := range []struct {
		m    *Map
		name string
	}{{ma, "a"}, {mb, "b"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start.Wait()
			for i := range rounds {
				key := fmt.Sprintf("k%d", i)
				switch {
				case i%2 == 0: // set against set
					_ = side.m.Set(key, state.StringValue(side.name), time.Hour)
				case side.name == "a": // delete against set
					side.m.Delete(key)
				default:
					_ = side.m.Set(key, state.StringValue("b"), time.Hour)
				}
				if i%20 == 0 {
					time.Sleep(time.Duration(i%3) * time.Millisecond)
				}
			}
		}()
	}
	start.Done()
	wg.Wait()
	took := converge(t, redisAt{addr: r.addr}, prefix, "race", 10*time.Second, ma, mb)
	got := contents(ma)
	kept := 0
	for i := 1; i < rounds; i += 2 {
		if _, ok := got[fmt.Sprintf("k%d", i)]; ok {
			kept++
		}
	}
	t.Logf("%d rounds of concurrent writes to one key: equal on both nodes and Redis %v after the last; delete-vs-set kept the set in %d of %d",
		rounds, took.Round(time.Millisecond), kept, rounds/2)
}

// proxy forwards TCP connections to a Redis server until cut: then it
// closes them all and refuses new ones, as a network partition of one
// node would.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  []net.Conn
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.setCut(true) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.cut {
				p.mu.Unlock()
				c.Close()
				continue
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				p.mu.Unlock()
				c.Close()
				continue
			}
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(u, c); u.Close() }()
			go func() { _, _ = io.Copy(c, u); c.Close() }()
		}
	}()
	return p
}

func (p *proxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
	}
}

// TestPartitionBacklogConverges cuts node B off Redis while both nodes
// write (A thousands of keys and deletes, B its own keys and some of A's)
// and then heals the partition: B's backlog is sent, what B missed is
// loaded, and A, B and Redis end equal.
func TestPartitionBacklogConverges(t *testing.T) {
	r := startRedis(t)
	prefix := fmt.Sprintf("t%d:", r.port)
	p := startProxy(t, r.addr)
	a := newNode(t, r, "a", nil)
	b, err := New(Options{Addrs: []string{p.ln.Addr().String()}, Prefix: prefix, Node: "b"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	eventually(t, 5*time.Second, "a connects", connected(a))
	eventually(t, 5*time.Second, "b connects", connected(b))
	ma, mb := a.Map("bans").(*Map), b.Map("bans").(*Map)
	for i := range 2000 {
		_ = ma.Set(fmt.Sprintf("old%d", i), state.BoolValue(true), time.Hour)
	}
	converge(t, redisAt{addr: r.addr}, prefix, "bans", 10*time.Second, ma, mb)

	p.setCut(true)
	eventually(t, 10*time.Second, "b notices the partition", func() bool { return !b.Stats().Connected })
	for i := range 10_000 {
		_ = ma.Set(fmt.Sprintf("new%d", i), state.NumberValue(float64(i)), time.Hour)
	}
	for i := range 1000 {
		ma.Delete(fmt.Sprintf("old%d", i))                                   // B still has them
		_ = mb.Set(fmt.Sprintf("b%d", i), state.StringValue("b"), time.Hour) // backlog
	}
	for i := 1000; i < 1100; i++ {
		mb.Delete(fmt.Sprintf("old%d", i)) // deletes from the backlog
	}
	time.Sleep(300 * time.Millisecond)
	healed := time.Now()
	p.setCut(false)
	took := converge(t, redisAt{addr: r.addr}, prefix, "bans", 20*time.Second, ma, mb)
	n := len(contents(ma))
	if n != 2000-1100+10_000+1000 {
		t.Errorf("converged on %d keys; want %d", n, 2000-1100+10_000+1000)
	}
	t.Logf("partition healed: A, B and Redis equal (%d keys) %v later (B reconnects with backoff); B: %+v",
		n, time.Since(healed).Round(time.Millisecond), b.Stats())
	_ = took
}

// TestAntiEntropyRepairsMissedWrites removes B's subscription's effect by
// writing behind it (straight into Redis through the script, as a node
// that B never hears from would): the anti-entropy pass notices the map's
// sequence number moved and reloads.
func TestAntiEntropyRepairsMissedWrites(t *testing.T) {
	r := startRedis(t)
	prefix := fmt.Sprintf("t%d:", r.port)
	b := newNode(t, r, "b", func(o *Options) { o.CheckEvery = 200 * time.Millisecond })
	eventually(t, 5*time.Second, "b connects", connected(b))
	mb := b.Map("bans").(*Map)
	time.Sleep(3 * b.SyncInterval())
	// A write published on another channel: B never receives it.
	c := redis.NewClient(&redis.Options{Addr: r.addr, DisableIdentity: true})
	defer c.Close()
	err := applyScript.Run(context.Background(), c,
		[]string{mapSeqKey(prefix, "bans"), mapKeyPrefix(prefix, "bans") + "10.0.0.1"},
		"elsewhere", "bans", 60000, "s", "10.0.0.1", time.Now().UnixMicro(), 5, "b:1", 0, "0", "0").Err()
	if err != nil {
		t.Fatal(err)
	}
	took := eventually(t, 5*time.Second, "the missed write repaired", func() bool { _, ok := mb.Get("10.0.0.1"); return ok })
	if s := b.Stats(); s.Repairs == 0 {
		t.Errorf("stats count no repair: %+v", s)
	}
	t.Logf("a write B never heard of reached it %v later (check every 200ms)", took)
}

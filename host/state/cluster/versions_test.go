package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/luafw/luafw/host/state"
)

// TestBucketMismatchReported: two plugin versions using one cluster
// bucket name with different rates (20/s and 40/s) silently starved one
// node before; now each node counts and logs the other's limits.
func TestBucketMismatchReported(t *testing.T) {
	r := startRedis(t)
	var logs syncLog
	a := newNode(t, r, "a", func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	b := newNode(t, r, "b", nil)
	eventually(t, 5*time.Second, "a connects", connected(a))
	eventually(t, 5*time.Second, "b connects", connected(b))
	ba, err := a.Bucket("conns", 20, 5)
	if err != nil {
		t.Fatal(err)
	}
	bb, err := b.Bucket("conns", 40, 5)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * a.SyncInterval())
	ba.TakeN("k", 1)
	bb.TakeN("k", 1)
	eventually(t, 5*time.Second, "a counts the mismatch", func() bool { return a.Stats().BucketMismatches > 0 })
	eventually(t, 5*time.Second, "b counts the mismatch", func() bool { return b.Stats().BucketMismatches > 0 })
	if !strings.Contains(logs.String(), "cluster bucket used with other limits on another node") || !strings.Contains(logs.String(), "their_rate=40") {
		t.Errorf("a's log:\n%s", logs.String())
	}
	// Logged once a minute, counted every time.
	for range 3 {
		bb.TakeN("k", 1)
		time.Sleep(2 * a.SyncInterval())
	}
	if n := strings.Count(logs.String(), "cluster bucket used with other limits"); n != 1 {
		t.Errorf("logged %d times; want once a minute", n)
	}
}

// aclRules are the ACL docs/scale.md gives a fleet's Redis user, for
// prefix p: the commands luafw sends (and its script calls), its keys and
// its channel, nothing else.
func aclRules(p string) []any {
	return []any{"on", ">fleet-acl-secret", "resetkeys", "~" + p + "*", "resetchannels", "&" + p + "sync", "-@all",
		"+ping", "+evalsha", "+script|load", "+scan", "+hmget", "+pttl", "+get", "+mget",
		"+incrby", "+subscribe", "+publish", "+hset", "+del", "+pexpire"}
}

// TestMinimalACL runs two nodes as a Redis ACL user with only the rules of
// aclRules: every kind of write works and converges, and the user can
// touch no key outside the prefix.
func TestMinimalACL(t *testing.T) {
	r := startRedis(t)
	prefix := fmt.Sprintf("t%d:", r.port)
	admin := redisAt{addr: r.addr}.client()
	defer admin.Close()
	ctx := context.Background()
	if err := admin.Do(ctx, append([]any{"ACL", "SETUSER", "luafw"}, aclRules(prefix)...)...).Err(); err != nil {
		t.Fatal(err)
	}
	var logs syncLog
	user := func(o *Options) {
		o.Username, o.Password = "luafw", "fleet-acl-secret"
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	}
	a, b := newNode(t, r, "a", user), newNode(t, r, "b", user)
	eventually(t, 5*time.Second, "a connects", connected(a))
	eventually(t, 5*time.Second, "b connects", connected(b))
	ma, mb := a.Map("bans").(*Map), b.Map("bans").(*Map)
	time.Sleep(2 * a.SyncInterval())
	_ = ma.Set("x", state.BoolValue(true), time.Minute)
	_, _ = mb.Incr("n", 2, 0, time.Minute)
	_ = mb.Set("y", state.StringValue("z"), 0)
	ma.Delete("y")
	a.Counter("c").Add(3)
	ba, _ := a.Bucket("k", 10, 2)
	ba.TakeN("x", 1)
	converge(t, redisAt{addr: r.addr}, prefix, "bans", 5*time.Second, ma, mb)
	eventually(t, 5*time.Second, "the counter reaches b", func() bool { return b.Counter("c").Get() == 3 })
	for _, s := range []*Store{a, b} {
		if st := s.Stats(); st.Refused != 0 || st.FlushErrors != 0 || st.AuthErrors != 0 {
			t.Errorf("a command was refused: %+v\n%s", st, logs.String())
		}
	}
	// The user can touch nothing else.
	c := redisAt{addr: r.addr}.client()
	c.Options().Username, c.Options().Password = "luafw", "fleet-acl-secret"
	defer c.Close()
	if err := c.Set(ctx, "other:key", 1, 0).Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("SET outside the prefix: %v", err)
	}
	if err := c.Publish(ctx, "other", "x").Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("PUBLISH on another channel: %v", err)
	}
}

// TestOutageLoggedAgain: while Redis stays down the log says so again at
// most every DownLogEvery, not only once, with the reason.
func TestOutageLoggedAgain(t *testing.T) {
	r := startRedis(t)
	r.stop()
	var logs syncLog
	newNode(t, r, "a", func(o *Options) {
		o.DownLogEvery = 300 * time.Millisecond
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	eventually(t, 10*time.Second, "the outage is logged again", func() bool {
		return strings.Contains(logs.String(), "redis still unreachable")
	})
	time.Sleep(time.Second)
	first, again := strings.Count(logs.String(), "redis unreachable"), strings.Count(logs.String(), "redis still unreachable")
	if first != 1 || again > 6 || !strings.Contains(logs.String(), "reason=down") {
		t.Errorf("logged %d times first and %d again in about 1.3 s (every 300 ms at most):\n%s", first, again, logs.String())
	}
}

// TestDeletesBounded: deleting keys this node never held sends nothing and
// keeps nothing (a plugin may delete every source it sees); an operator's
// delete is sent anyway; local tombstones stop at the key limit.
func TestDeletesBounded(t *testing.T) {
	r := startRedis(t)
	prefix := fmt.Sprintf("t%d:", r.port)
	a := newNode(t, r, "a", func(o *Options) { o.Limits = state.Limits{MaxKeys: 10} })
	b := newNode(t, r, "b", nil)
	eventually(t, 5*time.Second, "a connects", connected(a))
	eventually(t, 5*time.Second, "b connects", connected(b))
	ma, mb := a.Map("bans").(*Map), b.Map("bans").(*Map)
	for i := range 1000 {
		ma.Delete(fmt.Sprintf("never%d", i))
	}
	if q := a.Stats().Queued; q != 0 || ma.tombs.Load() != 0 {
		t.Errorf("deleting unknown keys queued %d writes and kept %d tombstones", q, ma.tombs.Load())
	}
	for round := range 5 {
		for i := range 10 {
			key := fmt.Sprintf("r%dk%d", round, i)
			if err := ma.Set(key, state.BoolValue(true), time.Hour); err != nil {
				t.Fatal(err)
			}
			ma.Delete(key)
		}
	}
	if n := ma.tombs.Load(); n > 10 {
		t.Errorf("%d local tombstones; want at most the key limit, 10", n)
	}
	// A full copy on A cannot hold B's key; an operator's delete on A is
	// sent regardless and lifts it on B.
	for i := range 10 {
		if err := ma.Set(fmt.Sprintf("full%d", i), state.BoolValue(true), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	_ = mb.Set("banned-elsewhere", state.BoolValue(true), time.Hour)
	eventually(t, 5*time.Second, "b's key in Redis", func() bool {
		_, ok := redisContents(t, redisAt{addr: r.addr}, prefix, "bans")["banned-elsewhere"]
		return ok
	})
	time.Sleep(3 * a.SyncInterval())
	if _, ok := ma.Get("banned-elsewhere"); ok {
		t.Fatal("a's full copy took the key anyway")
	}
	ma.Remove("banned-elsewhere")
	eventually(t, 5*time.Second, "the operator's delete reaches b", func() bool { _, ok := mb.Get("banned-elsewhere"); return !ok })
}

// TestACLWithoutScriptIsAnOutage: a user whose ACL lacks EVALSHA connects
// but cannot write: that is an outage with reason auth (writes stay
// queued, the fallback applies), not writes thrown away; fixing the ACL
// sends them.
func TestACLWithoutScriptIsAnOutage(t *testing.T) {
	r := startRedis(t)
	prefix := fmt.Sprintf("t%d:", r.port)
	admin := redisAt{addr: r.addr}.client()
	defer admin.Close()
	ctx := context.Background()
	var rules []any
	for _, x := range aclRules(prefix) {
		if x != "+evalsha" {
			rules = append(rules, x)
		}
	}
	if err := admin.Do(ctx, append([]any{"ACL", "SETUSER", "luafw"}, rules...)...).Err(); err != nil {
		t.Fatal(err)
	}
	var logs syncLog
	a := newNode(t, r, "a", func(o *Options) {
		o.Username, o.Password = "luafw", "fleet-acl-secret"
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	ma := a.Map("bans")
	_ = ma.Set("x", state.BoolValue(true), time.Minute)
	eventually(t, 5*time.Second, "the denial is an outage with reason auth", func() bool {
		s := a.Stats()
		return !s.Connected && s.Reason == "auth" && s.AuthErrors > 0 && s.Queued == 1
	})
	if err := admin.Do(ctx, "ACL", "SETUSER", "luafw", "+evalsha").Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the queued write reaches Redis", func() bool {
		_, ok := redisContents(t, redisAt{addr: r.addr}, prefix, "bans")["x"]
		return ok
	})
	if s := a.Stats(); s.Refused != 0 || s.Disconnects != 1 || s.Reconnects != 1 {
		t.Errorf("writes thrown away, or the outage counted more than once: %+v", s)
	}
	if n := strings.Count(logs.String(), "redis unreachable"); n != 1 {
		t.Errorf("the outage was logged %d times:\n%s", n, logs.String())
	}
}

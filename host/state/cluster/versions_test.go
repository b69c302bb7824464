package cluster

import (
	"log/slog"
	"strings"
	"testing"
	"time"
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

package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// subscribeLoop applies what the other nodes publish. After every
// (re)subscription it asks for the maps to be reloaded, since messages
// published while it was not subscribed are lost.
func (s *Store) subscribeLoop(ctx context.Context) {
	backoff := s.opts.SyncInterval
	for {
		msg, err := s.ps.Receive(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		backoff = s.opts.SyncInterval
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				ms, _, _ := s.snapshot()
				for _, mp := range ms {
					mp.load.Store(true)
				}
			}
		case *redis.Message:
			if err := s.apply(m.Payload); err != nil {
				s.log.Debug("ignored a sync message", "err", err)
			}
		}
	}
}

// apply applies one message to the local copies: a map message of
// applyScript ("M..."), or a node's bucket charges (JSON).
func (s *Store) apply(payload string) error {
	if rest, ok := strings.CutPrefix(payload, "M"); ok {
		msg, err := parseMapMsg(rest)
		if err != nil {
			return err
		}
		s.mu.Lock()
		m, ok := s.maps[msg.name]
		s.mu.Unlock()
		if ok {
			s.stats.opsReceived.Add(uint64(m.receive(msg)))
		}
		return nil
	}
	// Every node receives its own messages too; json.Marshal writes the
	// node name first, so they are recognised without decoding.
	if strings.HasPrefix(payload, s.self) {
		return nil
	}
	var msg message
	if err := json.Unmarshal([]byte(payload), &msg); err != nil {
		return fmt.Errorf("cluster: decode: %w", err)
	}
	if msg.Node == s.opts.Node {
		return nil
	}
	// Look the objects up under s.mu; apply outside it, in order.
	var todo []func()
	s.mu.Lock()
	for _, p := range msg.Params {
		if b, ok := s.buckets[p.Bucket]; ok && (p.Rate != b.shared.Rate() || p.Burst != b.shared.Burst()) {
			s.stats.mismatches.Add(1)
			if b.mismatchLog.Allow(time.Now().UnixNano(), time.Minute) {
				s.log.Warn("cluster bucket used with other limits on another node: the fleet enforces neither; give a changed bucket a new name",
					"bucket", p.Bucket, "node", msg.Node, "their_rate", p.Rate, "their_burst", p.Burst,
					"our_rate", b.shared.Rate(), "our_burst", b.shared.Burst())
			}
		}
	}
	for _, c := range msg.Charges {
		if b, ok := s.buckets[c.Bucket]; ok {
			todo = append(todo, func() { b.shared.Charge(c.Key, c.N, b.floor) })
		}
	}
	s.mu.Unlock()
	for _, f := range todo {
		f()
	}
	s.stats.opsReceived.Add(uint64(len(todo)))
	return nil
}

// loadBatch is how many entries a load reads per pipeline.
const loadBatch = 1000

// loadMap brings m's local copy up to what Redis holds: every entry (and
// tombstone) Redis has is applied if it is newer than the copy's, and the
// copy's entries Redis does not have are dropped unless they changed here
// during the load or have writes queued. Nothing that arrives while it
// runs is lost: messages keep being applied by version.
func (s *Store) loadMap(ctx context.Context, m *Map) (err error) {
	s.stats.loads.Add(1)
	seq0 := s.seq.Load()
	m.beginLoad()
	var redisSeq uint64
	defer func() { m.endLoad(redisSeq, err == nil) }()
	// The sequence number first: every write published after it is
	// either in the scan or applied from its message.
	n, err := s.rdb.Get(ctx, mapSeqKey(s.opts.Prefix, m.name)).Uint64()
	if err != nil && err != redis.Nil {
		return fmt.Errorf("cluster: load map %q: %w", m.name, err)
	}
	redisSeq = n
	prefix := mapKeyPrefix(s.opts.Prefix, m.name)
	keys, err := s.scan(ctx, globEscape(prefix)+"*")
	if err != nil {
		return err
	}
	found := make(map[string]bool, len(keys))
	for len(keys) > 0 {
		batch := keys[:min(len(keys), loadBatch)]
		keys = keys[len(batch):]
		pipe := s.rdb.Pipeline()
		gets := make([]*redis.SliceCmd, len(batch))
		ttls := make([]*redis.DurationCmd, len(batch))
		for i, k := range batch {
			gets[i] = pipe.HMGet(ctx, k, "h", "n", "v", "d")
			ttls[i] = pipe.PTTL(ctx, k)
		}
		if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil && !isReplyError(err) {
			return fmt.Errorf("cluster: load map %q: %w", m.name, err)
		}
		for i, k := range batch {
			e, ok := entryOf(gets[i], ttls[i])
			if !ok {
				continue
			}
			e.key = strings.TrimPrefix(k, prefix)
			found[e.key] = true
			m.apply(e)
		}
	}
	m.dropMissing(found, seq0)
	return nil
}

// entryOf reads one entry of a load; ok is false for a key gone since the
// scan or not written by luafw.
func entryOf(get *redis.SliceCmd, pttl *redis.DurationCmd) (entryMsg, bool) {
	f, err := get.Result()
	if err != nil || len(f) != 4 {
		return entryMsg{}, false
	}
	str := func(i int) (string, bool) { s, ok := f[i].(string); return s, ok }
	hs, ok1 := str(0)
	ns, ok2 := str(1)
	if !ok1 || !ok2 {
		return entryMsg{}, false
	}
	h, err1 := strconv.ParseInt(hs, 10, 64)
	n, err2 := strconv.ParseInt(ns, 10, 64)
	if err1 != nil || err2 != nil {
		return entryMsg{}, false
	}
	e := entryMsg{ver: version{h, n}}
	if _, dead := str(3); dead {
		e.del = true
	} else if e.val, ok1 = str(2); !ok1 {
		return entryMsg{}, false
	}
	switch ttl := pttl.Val(); {
	case ttl == -2: // gone since the HMGET
		return entryMsg{}, false
	case ttl > 0:
		e.ttl = max(1, ttl.Milliseconds())
	}
	return e, true
}

// scan returns the keys matching pattern, on every master of a cluster.
func (s *Store) scan(ctx context.Context, pattern string) ([]string, error) {
	one := func(ctx context.Context, c redis.Cmdable) ([]string, error) {
		var keys []string
		it := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for it.Next(ctx) {
			keys = append(keys, it.Val())
		}
		return keys, it.Err()
	}
	cc, ok := s.rdb.(*redis.ClusterClient)
	if !ok {
		keys, err := one(ctx, s.rdb)
		if err != nil {
			return nil, fmt.Errorf("cluster: scan: %w", err)
		}
		return keys, nil
	}
	var all []string
	var mu sync.Mutex
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		keys, err := one(ctx, c)
		mu.Lock()
		all = append(all, keys...)
		mu.Unlock()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: scan: %w", err)
	}
	return all, nil
}

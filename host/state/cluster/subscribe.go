package cluster

import (
	"context"
	"encoding/json"
	"fmt"
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

// apply applies one node's message to the local copies.
func (s *Store) apply(payload string) error {
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
	for _, op := range msg.Maps {
		if m, ok := s.maps[op.Map]; ok {
			todo = append(todo, func() { m.apply(op) })
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
	n := uint64(len(todo))
	s.stats.opsReceived.Add(n)
	return nil
}

// loadMap replaces m's local copy by what Redis holds, except for keys
// with writes still queued here (they are newer).
func (s *Store) loadMap(ctx context.Context, m *Map) error {
	prefix := mapKeyPrefix(s.opts.Prefix, m.name)
	keys, err := s.scan(ctx, globEscape(prefix)+"*")
	if err != nil {
		return err
	}
	pipe := s.rdb.Pipeline()
	gets := make([]*redis.StringCmd, len(keys))
	ttls := make([]*redis.DurationCmd, len(keys))
	for i, k := range keys {
		gets[i] = pipe.Get(ctx, k)
		ttls[i] = pipe.PTTL(ctx, k)
	}
	if len(keys) > 0 {
		if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil && !isReplyError(err) {
			return fmt.Errorf("cluster: load map %q: %w", m.name, err)
		}
	}
	pending := m.pending()
	remote := make(map[string]bool, len(keys))
	for i, k := range keys {
		key := strings.TrimPrefix(k, prefix)
		raw, err := gets[i].Result()
		if err != nil || pending[key] {
			continue
		}
		v, ok := decodeValue(raw)
		if !ok {
			continue
		}
		ttl := ttls[i].Val()
		if ttl < 0 { // -1: no expiry; -2: gone since the GET
			if ttl == -2 {
				continue
			}
			ttl = 0
		}
		remote[key] = true
		_ = m.local.Set(key, v, ttl)
	}
	for _, e := range m.local.Entries() {
		if !remote[e.Key] && !pending[e.Key] {
			m.local.Delete(e.Key)
		}
	}
	return nil
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

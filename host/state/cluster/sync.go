package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// maxBackoff is the longest wait between two reconnection attempts.
const maxBackoff = 5 * time.Second

// syncLoop sends the queued writes every interval while Redis answers,
// and tries to reconnect with exponential backoff while it does not.
func (s *Store) syncLoop(ctx context.Context) {
	tick := time.NewTicker(s.opts.SyncInterval)
	defer tick.Stop()
	backoff := s.opts.SyncInterval
	var retryAt time.Time
	down := false // an outage has been logged and counted
	fail := func(err error) {
		s.connected.Store(false)
		retryAt = time.Now().Add(backoff)
		backoff = min(2*backoff, maxBackoff)
		if !down && ctx.Err() == nil {
			down = true
			s.stats.disconnects.Add(1)
			s.log.Warn("redis unreachable: deciding on local state, fallback limits apply", "err", err)
		}
	}
	lastSweep := time.Now()
	for {
		if !s.connected.Load() && !time.Now().Before(retryAt) {
			if err := s.reconnect(ctx); err != nil {
				fail(err)
			} else {
				backoff = s.opts.SyncInterval
				if down {
					down = false
					s.stats.reconnects.Add(1)
					s.log.Info("redis reachable again: reconciled shared state")
				}
			}
		}
		if s.connected.Load() {
			if err := s.flush(ctx); err != nil {
				fail(err)
			}
		}
		if time.Since(lastSweep) > time.Second {
			s.local.Sweep()
			s.fbStore.Sweep()
			lastSweep = time.Now()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// reconnect checks that Redis answers, reloads every map from it and
// marks the store connected.
func (s *Store) reconnect(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, max(time.Second, 5*s.opts.SyncInterval))
	defer cancel()
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("cluster: ping: %w", err)
	}
	ms, _, _ := s.snapshot()
	for _, m := range ms {
		m.load.Store(true)
	}
	if err := s.loadMaps(ctx); err != nil {
		return err
	}
	s.connected.Store(true)
	return nil
}

// loadMaps loads the maps that ask for it from Redis.
func (s *Store) loadMaps(ctx context.Context) error {
	ms, _, _ := s.snapshot()
	for _, m := range ms {
		if !m.load.Swap(false) {
			continue
		}
		if err := s.loadMap(ctx, m); err != nil {
			m.load.Store(true)
			return err
		}
	}
	return nil
}

// flush sends every queued write in one pipeline and publishes them.
func (s *Store) flush(ctx context.Context) error {
	if err := s.loadMaps(ctx); err != nil {
		return err
	}
	ms, cs, bs := s.snapshot()
	msg := message{Node: s.opts.Node}
	pipe := s.rdb.Pipeline()
	taken := make([][]mapOp, len(ms))
	for i, m := range ms {
		taken[i] = m.take()
		prefix := mapKeyPrefix(s.opts.Prefix, m.name)
		for _, op := range taken[i] {
			queueOp(ctx, pipe, prefix+op.Key, op)
		}
		msg.Maps = append(msg.Maps, taken[i]...)
	}
	for _, b := range bs {
		msg.Charges = b.take(msg.Charges)
	}
	deltas := make([]int64, len(cs))
	ccmds := make([]*redis.IntCmd, len(cs))
	for i, c := range cs {
		deltas[i] = c.pending.Load()
		ccmds[i] = pipe.IncrBy(ctx, c.key, deltas[i])
	}
	if len(msg.Maps)+len(msg.Charges) > 0 {
		payload, err := json.Marshal(msg)
		if err != nil {
			return fmt.Errorf("cluster: encode: %w", err)
		}
		pipe.Publish(ctx, s.channel, payload)
	}
	if pipe.Len() == 0 {
		// Nothing to send: a PING still finds out whether Redis answers,
		// so an outage is noticed (and fallback limits start) while idle.
		pipe.Ping(ctx)
	}
	_, err := pipe.Exec(ctx)
	if err != nil && !isReplyError(err) {
		s.stats.flushErrors.Add(1)
		for i, m := range ms {
			m.requeue(taken[i])
		}
		return fmt.Errorf("cluster: sync: %w", err)
	}
	s.stats.flushes.Add(1)
	s.stats.opsSent.Add(uint64(len(msg.Maps) + len(msg.Charges) + len(cs)))
	for i, c := range cs {
		if v, err := ccmds[i].Result(); err == nil {
			// Briefly counts deltas[i] twice rather than not at all.
			c.global.Store(v)
			c.pending.Add(-deltas[i])
		}
	}
	return nil
}

// queueOp adds the Redis commands of one map write to pipe.
func queueOp(ctx context.Context, pipe redis.Pipeliner, key string, op mapOp) {
	ttl := time.Duration(op.TTL) * time.Millisecond
	switch op.Kind {
	case opSet:
		pipe.Set(ctx, key, op.Val, ttl)
	case opDelete:
		pipe.Del(ctx, key)
	case opIncr:
		if op.Init != 0 {
			pipe.SetNX(ctx, key, op.Init, ttl)
		}
		pipe.IncrByFloat(ctx, key, op.Delta)
		if ttl > 0 {
			pipe.Do(ctx, "PEXPIRE", key, op.TTL, "NX") // keeps an existing key's expiry, as state.Map.Incr does
		}
	}
}

// isReplyError reports whether err is an error reply of the server (a
// command that failed, say INCRBYFLOAT on a string) rather than a failure
// to talk to it.
func isReplyError(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}

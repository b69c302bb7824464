package cluster

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/luafw/luafw/host/state"
)

// Map is a cluster-wide map: reads and writes go to a local copy, writes
// are queued for the sync loop.
type Map struct {
	s     *Store
	name  string
	local *state.Map
	// load asks the sync loop to (re)load the map from Redis: on creation
	// and after the pub/sub stream may have lost messages.
	load atomic.Bool

	mu   sync.Mutex
	ops  []mapOp
	last map[string]int // key -> index in ops of its last queued incr
}

// Get reads the local copy.
func (m *Map) Get(key string) (state.Value, bool) { return m.local.Get(key) }

// Len is the number of keys in the local copy.
func (m *Map) Len() int { return m.local.Len() }

// Set writes the local copy and queues the write.
func (m *Map) Set(key string, v state.Value, ttl time.Duration) error {
	if err := m.local.Set(key, v, ttl); err != nil {
		return err
	}
	if v.Kind == state.Nil {
		m.queue(mapOp{Kind: opDelete, Map: m.name, Key: key})
		return nil
	}
	m.queue(mapOp{Kind: opSet, Map: m.name, Key: key, Val: encodeValue(v), TTL: millis(ttl)})
	return nil
}

// Incr increments the local copy and queues the increment; increments of
// one key within an interval are sent as one.
func (m *Map) Incr(key string, delta, init float64, ttl time.Duration) (float64, error) {
	n, err := m.local.Incr(key, delta, init, ttl)
	if err != nil {
		return 0, err
	}
	m.mu.Lock()
	if i, ok := m.last[key]; ok {
		m.ops[i].Delta += delta
		m.mu.Unlock()
		return n, nil
	}
	m.mu.Unlock()
	m.queue(mapOp{Kind: opIncr, Map: m.name, Key: key, Delta: delta, Init: init, TTL: millis(ttl)})
	return n, nil
}

// Delete deletes from the local copy and queues the delete.
func (m *Map) Delete(key string) {
	m.local.Delete(key)
	m.queue(mapOp{Kind: opDelete, Map: m.name, Key: key})
}

func (m *Map) queue(op mapOp) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.ops) >= m.s.opts.MaxPending {
		m.s.stats.dropped.Add(1)
		return
	}
	if op.Kind == opIncr {
		m.last[op.Key] = len(m.ops)
	} else {
		delete(m.last, op.Key)
	}
	m.ops = append(m.ops, op)
}

// take removes and returns the queued operations.
func (m *Map) take() []mapOp {
	m.mu.Lock()
	defer m.mu.Unlock()
	ops := m.ops
	m.ops = nil
	clear(m.last)
	return ops
}

// requeue puts back operations that could not be sent, ahead of those
// queued since, within MaxPending.
func (m *Map) requeue(ops []mapOp) {
	m.mu.Lock()
	defer m.mu.Unlock()
	all := append(ops, m.ops...)
	if n := len(all) - m.s.opts.MaxPending; n > 0 {
		m.s.stats.dropped.Add(uint64(n))
		all = all[:m.s.opts.MaxPending]
	}
	m.ops = all
	clear(m.last) // no coalescing across a failure: keeps the order simple
}

// pending reports the keys with queued writes.
func (m *Map) pending() map[string]bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	keys := make(map[string]bool, len(m.ops))
	for _, op := range m.ops {
		keys[op.Key] = true
	}
	return keys
}

// apply applies an operation another node published to the local copy.
func (m *Map) apply(op mapOp) {
	ttl := time.Duration(op.TTL) * time.Millisecond
	switch op.Kind {
	case opSet:
		if v, ok := decodeValue(op.Val); ok {
			_ = m.local.Set(op.Key, v, ttl) // full: the key stays unknown here, as any new key would
		}
	case opDelete:
		m.local.Delete(op.Key)
	case opIncr:
		_, _ = m.local.Incr(op.Key, op.Delta, op.Init, ttl)
	}
}

// Counter is a cluster-wide counter: the global value as last read plus
// this node's increments not yet sent.
type Counter struct {
	key     string
	global  atomic.Int64
	pending atomic.Int64
}

// Add adds delta locally and returns the (approximate) cluster-wide value.
func (c *Counter) Add(delta int64) int64 { return c.global.Load() + c.pending.Add(delta) }

// Get returns the (approximate) cluster-wide value.
func (c *Counter) Get() int64 { return c.global.Load() + c.pending.Load() }

// Bucket is a cluster-wide token-bucket family: a local family charged
// with the tokens other nodes take, and a fallback family used while Redis
// is unreachable.
type Bucket struct {
	s        *Store
	name     string
	shared   *state.Bucket
	fallback *state.Bucket
	floor    float64
	// charges are the tokens taken here since the last sync, per key;
	// sharded like the buckets so that workers rarely share a lock.
	charges [chargeShards]chargeShard
}

const chargeShards = 16

type chargeShard struct {
	mu sync.Mutex
	m  map[string]float64
	_  [64 - 16]byte // one shard per cache line
}

// chargeShardOf is key's charge shard.
func chargeShardOf(key string) int { return int(state.ShardHash(key) % chargeShards) }

// TakeN takes n tokens from key's bucket if it holds them.
func (b *Bucket) TakeN(key string, n float64) bool {
	if !b.s.connected.Load() {
		return b.fallback.TakeN(key, n)
	}
	if !b.shared.TakeN(key, n) {
		return false
	}
	if n > 0 {
		sh := &b.charges[chargeShardOf(key)]
		sh.mu.Lock()
		if sh.m == nil {
			sh.m = map[string]float64{}
		}
		sh.m[key] += n
		sh.mu.Unlock()
	}
	return true
}

// take appends the charges since the last call to out and clears them.
func (b *Bucket) take(out []charge) []charge {
	for i := range b.charges {
		sh := &b.charges[i]
		sh.mu.Lock()
		for key, n := range sh.m {
			out = append(out, charge{Bucket: b.name, Key: key, N: n})
		}
		clear(sh.m)
		sh.mu.Unlock()
	}
	return out
}

package cluster

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/luafw/luafw/host/state"
	"github.com/luafw/luafw/internal/tokenbucket"
)

// Map is a cluster-wide map: reads and writes go to a local copy, writes
// are queued for the sync loop. Every entry of the copy has a version
// (see version); a write from elsewhere (published by Redis, or read by a
// load) replaces what the copy holds only if it is newer, and deletes
// leave tombstones, so every node and Redis end with the newest write of
// each key whatever order they heard of them in.
type Map struct {
	s     *Store
	name  string
	local *state.Map
	// load asks the sync loop to (re)load the map from Redis: on creation,
	// after the pub/sub stream may have lost messages, and when the
	// anti-entropy check finds the copy behind.
	load atomic.Bool

	metas    [metaShards]metaShard
	tombs    atomic.Int64 // tombstones in metas
	maxTombs int64

	mu   sync.Mutex
	ops  []mapOp
	last map[string]int // key -> index in ops of its last queued incr
	// The map's sequence as heard from Redis (applyScript numbers the
	// writes it publishes): lastSeq is the last one applied; a message
	// starting past lastSeq+1 means some were lost. While loading, the
	// load sets lastSeq when it ends, from what it read and loadMax.
	lastSeq uint64
	loading bool
	loadMax uint64
	suspect uint64 // Redis's sequence at the last check, when ahead of lastSeq
}

// meta is the version of one key of the copy.
type meta struct {
	v    version
	seq  uint64 // Store.seq when written here: the order of local changes
	dead bool   // a tombstone: deleted at v
	exp  int64  // a tombstone's expiry, unix ns
}

const metaShards = 32

type metaShard struct {
	mu sync.Mutex
	m  map[string]meta
	_  [64 - 16]byte // one shard per cache line
}

func newMap(s *Store, name string) *Map {
	maxTombs := int64(s.opts.Limits.MaxKeys)
	if maxTombs <= 0 {
		maxTombs = state.DefaultMaxKeys
	}
	m := &Map{s: s, name: name, local: s.local.Map(name), last: map[string]int{}, maxTombs: maxTombs}
	for i := range m.metas {
		m.metas[i].m = map[string]meta{}
	}
	m.load.Store(true)
	return m
}

func (m *Map) metaShard(key string) *metaShard { return &m.metas[state.ShardHash(key)%metaShards] }

// putMeta records key's version in sh (locked), counting tombstones. Past
// the map's key limit in tombstones, a delete keeps none here (Redis still
// keeps its own): a flood of deletes of distinct keys must not grow the
// copy without bound.
func (m *Map) putMeta(sh *metaShard, key string, mt meta) {
	old, had := sh.m[key]
	if had && old.dead {
		m.tombs.Add(-1)
	}
	if mt.dead {
		if m.tombs.Load() >= m.maxTombs {
			delete(sh.m, key)
			return
		}
		m.tombs.Add(1)
	}
	sh.m[key] = mt
}

// dropMeta forgets key's version (sh locked).
func (m *Map) dropMeta(sh *metaShard, key string) {
	if old, had := sh.m[key]; had {
		if old.dead {
			m.tombs.Add(-1)
		}
		delete(sh.m, key)
	}
}

// Get reads the local copy.
func (m *Map) Get(key string) (state.Value, bool) { return m.local.Get(key) }

// Len is the number of keys in the local copy.
func (m *Map) Len() int { return m.local.Len() }

// Set writes the local copy and queues the write.
func (m *Map) Set(key string, v state.Value, ttl time.Duration) error {
	if v.Kind == state.Nil {
		m.Delete(key)
		return nil
	}
	sh := m.metaShard(key)
	sh.mu.Lock()
	if err := m.local.Set(key, v, ttl); err != nil {
		sh.mu.Unlock()
		return err
	}
	ver := m.s.nextVersion()
	m.putMeta(sh, key, meta{v: ver, seq: m.s.seq.Add(1)})
	sh.mu.Unlock()
	m.queue(mapOp{Kind: opSet, Key: key, Ver: ver, Val: encodeValue(v), TTL: millis(ttl)})
	return nil
}

// Incr increments the local copy and queues the increment; increments of
// one key within an interval are sent as one.
func (m *Map) Incr(key string, delta, init float64, ttl time.Duration) (float64, error) {
	sh := m.metaShard(key)
	sh.mu.Lock()
	n, err := m.local.Incr(key, delta, init, ttl)
	if err != nil {
		sh.mu.Unlock()
		return 0, err
	}
	ver := m.s.nextVersion()
	m.putMeta(sh, key, meta{v: ver, seq: m.s.seq.Add(1)})
	sh.mu.Unlock()
	m.mu.Lock()
	if i, ok := m.last[key]; ok {
		m.ops[i].Delta += delta
		m.ops[i].Ver = ver
		m.mu.Unlock()
		return n, nil
	}
	m.mu.Unlock()
	m.queue(mapOp{Kind: opIncr, Key: key, Ver: ver, Delta: delta, Init: init, TTL: millis(ttl)})
	return n, nil
}

// Delete deletes from the local copy, leaving a tombstone, and queues the
// delete. A key this copy has never held (no entry, no version) is left
// alone: a plugin deleting every source it sees must not fill Redis with
// tombstones. (A set made elsewhere that has not arrived yet then wins.)
func (m *Map) Delete(key string) { m.delete(key, false) }

// delete is Delete; always sends the delete even for a key unknown here
// (an operator's, whose copy may lack what the fleet has).
func (m *Map) delete(key string, always bool) {
	sh := m.metaShard(key)
	sh.mu.Lock()
	if _, known := sh.m[key]; !known && !always {
		if _, live := m.local.Lookup(key); !live {
			sh.mu.Unlock()
			return
		}
	}
	m.local.Delete(key)
	ver := m.s.nextVersion()
	m.putMeta(sh, key, meta{v: ver, seq: m.s.seq.Add(1), dead: true, exp: m.s.tombstoneExpiry()})
	sh.mu.Unlock()
	m.queue(mapOp{Kind: opDelete, Key: key, Ver: ver})
}

func (m *Map) queue(op mapOp) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.ops) >= m.s.opts.MaxPending {
		m.s.stats.dropped.Add(1)
		// This copy now holds a write the fleet will not: reload it
		// from Redis once connected, so that it agrees again.
		m.load.Store(true)
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
	if len(ops) == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	all := append(ops, m.ops...)
	if n := len(all) - m.s.opts.MaxPending; n > 0 {
		m.s.stats.dropped.Add(uint64(n))
		all = all[:m.s.opts.MaxPending]
		m.load.Store(true)
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

// apply applies an entry as Redis holds it (published, or read by a load)
// to the local copy if it is newer than what the copy holds, and reports
// whether it was.
func (m *Map) apply(e entryMsg) bool {
	var v state.Value
	if !e.del {
		var ok bool
		if v, ok = decodeValue(e.val); !ok {
			return false
		}
	}
	sh := m.metaShard(e.key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if cur, ok := sh.m[e.key]; ok && !e.ver.newer(cur.v) {
		return false
	}
	m.s.clock.observe(e.ver.H)
	if e.del {
		m.local.Delete(e.key)
		m.putMeta(sh, e.key, meta{v: e.ver, seq: m.s.seq.Add(1), dead: true, exp: m.s.tombstoneExpiry()})
		return true
	}
	if err := m.local.Set(e.key, v, time.Duration(max(e.ttl, 0))*time.Millisecond); err != nil {
		// Full: the key stays unknown here, as any new key would; the
		// next load tries again.
		return false
	}
	m.putMeta(sh, e.key, meta{v: e.ver, seq: m.s.seq.Add(1)})
	return true
}

// receive applies one message of applyScript and checks its sequence
// numbers for a gap.
func (m *Map) receive(msg mapMsg) int {
	m.mu.Lock()
	if m.loading {
		m.loadMax = max(m.loadMax, msg.last)
	} else {
		if msg.first > m.lastSeq+1 {
			m.s.stats.gaps.Add(1)
			m.load.Store(true)
		}
		m.lastSeq = max(m.lastSeq, msg.last)
	}
	m.mu.Unlock()
	n := 0
	var newest int64
	for _, e := range msg.entries {
		newest = max(newest, e.ver.H)
		if m.apply(e) {
			n++
		}
	}
	if newest > 0 {
		m.s.lagUS.Store(max(0, m.s.clock.wall().UnixMicro()-newest))
	}
	return n
}

// beginLoad marks the start of a load: messages are applied as usual,
// their sequence numbers only noted.
func (m *Map) beginLoad() {
	m.mu.Lock()
	m.loading, m.loadMax = true, 0
	m.mu.Unlock()
}

// endLoad ends a load that read sequence number seq from Redis before
// its scan (ok), or failed.
func (m *Map) endLoad(seq uint64, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.loading = false
	if ok {
		m.lastSeq, m.suspect = max(seq, m.loadMax), 0
	}
}

// check compares Redis's sequence number of the map with what this node
// applied (the anti-entropy pass): behind by the same messages at two
// checks in a row, or ahead of Redis (which lost data), asks for a load.
func (m *Map) check(redisSeq uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.loading:
	case redisSeq < m.lastSeq:
		m.load.Store(true)
	case m.suspect != 0 && m.lastSeq < m.suspect:
		m.s.stats.repairs.Add(1)
		m.load.Store(true)
		m.suspect = 0
	case redisSeq > m.lastSeq:
		m.suspect = redisSeq // in flight, or lost: the next check tells
	default:
		m.suspect = 0
	}
}

// dropMissing deletes from the copy the live keys a load did not find in
// Redis, unless they changed here since the load began (after seq0) or
// have writes queued: Redis dropped them (expiry, a tombstone that
// expired, a restart) and this copy follows.
func (m *Map) dropMissing(found map[string]bool, seq0 uint64) int {
	pending := m.pending()
	n := 0
	for i := range m.metas {
		sh := &m.metas[i]
		sh.mu.Lock()
		for k, mt := range sh.m {
			if !mt.dead && mt.seq <= seq0 && !found[k] && !pending[k] {
				m.local.Delete(k)
				m.dropMeta(sh, k)
				n++
			}
		}
		sh.mu.Unlock()
	}
	return n
}

// sweepMetas drops the tombstones that expired and the versions of keys
// the copy no longer holds (expired).
func (m *Map) sweepMetas(now int64) {
	for i := range m.metas {
		sh := &m.metas[i]
		sh.mu.Lock()
		for k, mt := range sh.m {
			if mt.dead {
				if now >= mt.exp {
					m.dropMeta(sh, k)
				}
			} else if _, ok := m.local.Lookup(k); !ok {
				m.dropMeta(sh, k)
			}
		}
		sh.mu.Unlock()
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
	// mismatchLog limits the warnings about other nodes using this name
	// with another rate or burst to one a minute.
	mismatchLog tokenbucket.Every
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

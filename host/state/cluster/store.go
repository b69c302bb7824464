package cluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/luafw/luafw/host/state"
	"github.com/luafw/luafw/internal/tokenbucket"
)

// Defaults of Options.
const (
	DefaultPrefix       = "luafw:"
	DefaultSyncInterval = 100 * time.Millisecond
	DefaultMaxPending   = 100_000
	DefaultTombstoneTTL = time.Hour
	DefaultCheckEvery   = time.Second
	DefaultDownLogEvery = 30 * time.Second
)

// Options configure a Store.
type Options struct {
	// Addrs is the Redis server's address; with MasterName, the
	// sentinels' addresses.
	Addrs []string
	// MasterName, when set, makes Addrs sentinels (Redis Sentinel): the
	// store asks them for the master and follows it when they fail over.
	MasterName string
	// SentinelUsername and SentinelPassword authenticate to the sentinels.
	SentinelUsername, SentinelPassword string
	// Username and Password authenticate (ACL user, or only Password for
	// requirepass).
	Username, Password string
	// DB is the database number (not with Redis Cluster).
	DB int
	// TLS, when set, wraps the connections.
	TLS *tls.Config
	// Prefix starts every key and the channel name; DefaultPrefix when
	// empty. Nodes that share state share the prefix.
	Prefix string
	// SyncInterval is how often queued writes are sent; DefaultSyncInterval
	// when <= 0.
	SyncInterval time.Duration
	// FallbackShare is the share of each bucket family's rate and burst a
	// node allows on its own while Redis is unreachable, in (0, 1]; 1 when
	// 0.
	FallbackShare float64
	// MaxPending bounds the queued map writes per map; DefaultMaxPending
	// when <= 0.
	MaxPending int
	// TombstoneTTL is how long a deleted map key's tombstone (its delete's
	// version) is kept, in Redis and in each copy: a write older than the
	// delete that arrives within it is refused. Writes queued longer than
	// this (an outage) are dropped rather than sent, so that none can bring
	// a deleted key back. DefaultTombstoneTTL when <= 0.
	TombstoneTTL time.Duration
	// CheckEvery is how often the anti-entropy pass compares each map's
	// sequence number in Redis with what this node applied (one MGET);
	// DefaultCheckEvery when <= 0.
	CheckEvery time.Duration
	// DownLogEvery is how often, at most, the log says again that Redis
	// is still unreachable (with the failed attempts since);
	// DefaultDownLogEvery when <= 0.
	DownLogEvery time.Duration
	// Node names this node in published messages; a random name when empty.
	Node string
	// Clock and Limits are those of the local copies (see host/state).
	Clock  state.Clock
	Limits state.Limits
	Logger *slog.Logger
}

// Stats count what the sync loop did.
type Stats struct {
	Connected   bool
	Flushes     uint64 // pipelines sent
	FlushErrors uint64 // pipelines that failed
	OpsSent     uint64 // map writes, counter updates and charges sent
	OpsReceived uint64 // map writes and charges applied from other nodes
	Dropped     uint64 // map writes dropped: queue full
	Disconnects uint64 // transitions to unreachable
	Reconnects  uint64 // transitions back to reachable
	Gaps        uint64 // map messages found missing by their sequence numbers
	Repairs     uint64 // maps the anti-entropy pass found behind Redis
	Loads       uint64 // map loads from Redis
	Stale       uint64 // queued map writes dropped: older than the tombstone TTL
	Refused     uint64 // map writes Redis refused or could not apply (a bad value, an older version is not counted)
	AuthErrors  uint64 // attempts to reach Redis that failed on credentials or permissions
	// BucketMismatches counts messages of other nodes charging a bucket
	// family of this node's name with another rate or burst.
	BucketMismatches uint64
	// Reason is why Redis was last unreachable: "down", "auth" or "tls";
	// "" while connected.
	Reason string
	// LastSync is when the last pipeline succeeded; zero before the first.
	LastSync time.Time
	// Queued is the map writes waiting to be sent.
	Queued int
	// Lag is how long after it was written the newest write of the last
	// map message received was applied here (writer's queue, Redis and
	// pub/sub together; clocks apart add their difference).
	Lag time.Duration
}

type counters struct {
	flushes, flushErrors, opsSent, opsReceived, dropped, disconnects, reconnects atomic.Uint64
	gaps, repairs, loads, stale, refused, authErrors, mismatches                 atomic.Uint64
}

// Store is the cluster-wide state of one node. Its objects are safe for
// concurrent use; Close stops its goroutines.
type Store struct {
	opts    Options
	log     *slog.Logger
	rdb     redis.UniversalClient
	local   *state.Store // local copies of maps and shared bucket families
	fbStore *state.Store // fallback bucket families
	channel string
	self    string // how this node's published messages start

	connected atomic.Bool
	stats     counters

	id    int64         // this node's id in versions
	clock hlc           // orders this node's writes
	seq   atomic.Uint64 // counts changes to local copies (meta.seq)
	// scriptLoaded is false until applyScript is in Redis's script cache
	// (and again after a NOSCRIPT answer: Redis restarted).
	scriptLoaded atomic.Bool
	lastCheck    time.Time         // of the anti-entropy pass; sync loop only
	lastSync     atomic.Int64      // unix ns of the last successful pipeline
	reason       atomic.Int32      // a failure: why Redis was last unreachable
	lagUS        atomic.Int64      // Stats.Lag, µs
	refusedLog   tokenbucket.Every // of "redis refused map writes", once a minute

	mu       sync.Mutex
	maps     map[string]*Map
	counters map[string]*Counter
	buckets  map[string]*Bucket

	ps     *redis.PubSub // Close closes it: a blocked Receive ignores its context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a Store and starts its sync and subscription loops. It does
// not wait for Redis: until the first connection succeeds the store runs
// on local state, as it does during an outage.
func New(opts Options) (*Store, error) {
	if len(opts.Addrs) == 0 {
		return nil, errors.New("cluster: no redis address")
	}
	if len(opts.Addrs) > 1 && opts.MasterName == "" {
		return nil, errors.New("cluster: several redis addresses: Redis Cluster is not supported (name a Sentinel master for failover)")
	}
	if opts.FallbackShare == 0 {
		opts.FallbackShare = 1
	}
	if !(opts.FallbackShare > 0 && opts.FallbackShare <= 1) {
		return nil, fmt.Errorf("cluster: fallback share %v: want a number in (0, 1]", opts.FallbackShare)
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = DefaultSyncInterval
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = DefaultMaxPending
	}
	if opts.Node == "" {
		opts.Node = nodeName()
	}
	if opts.TombstoneTTL <= 0 {
		opts.TombstoneTTL = DefaultTombstoneTTL
	}
	if opts.CheckEvery <= 0 {
		opts.CheckEvery = DefaultCheckEvery
	}
	if opts.DownLogEvery <= 0 {
		opts.DownLogEvery = DefaultDownLogEvery
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	// Timeouts are a few intervals: a command that slow is an outage to
	// the sync loop, which must keep its pace.
	timeout := max(time.Second, 5*opts.SyncInterval)
	s := &Store{
		opts: opts,
		log:  opts.Logger.With("component", "cluster-state"),
		rdb: redis.NewUniversalClient(&redis.UniversalOptions{
			Addrs: opts.Addrs, Username: opts.Username, Password: opts.Password, DB: opts.DB,
			MasterName: opts.MasterName, SentinelUsername: opts.SentinelUsername, SentinelPassword: opts.SentinelPassword,
			TLSConfig: opts.TLS, DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout,
			MaxRetries: -1, PoolSize: 4, DisableIdentity: true,
		}),
		local:    state.NewStore(opts.Clock, opts.Limits),
		fbStore:  state.NewStore(opts.Clock, opts.Limits),
		channel:  opts.Prefix + "sync",
		self:     selfPrefix(opts.Node),
		id:       nodeID(),
		maps:     map[string]*Map{},
		counters: map[string]*Counter{},
		buckets:  map[string]*Bucket{},
	}
	wall := time.Now
	if opts.Clock != nil {
		wall = opts.Clock
	}
	s.clock.wall = wall
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.ps = s.rdb.Subscribe(ctx, s.channel)
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.syncLoop(ctx) }()
	go func() { defer s.wg.Done(); s.subscribeLoop(ctx) }()
	return s, nil
}

// selfPrefix is how json.Marshal starts a message of node.
func selfPrefix(node string) string {
	b, _ := json.Marshal(message{Node: node})
	return strings.TrimSuffix(string(b), "}") + ","
}

func nodeName() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Close sends what is queued (if Redis answers within a second), then
// stops the loops and closes the connections.
func (s *Store) Close() {
	s.cancel()
	_ = s.ps.Close()
	s.wg.Wait()
	if s.connected.Load() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = s.flush(ctx)
		cancel()
	}
	_ = s.rdb.Close()
}

// Probe asks Redis once (a PING, within timeout) whether it answers this
// store's connections with its credentials. reason is "" when it does,
// else "down" (no answer), "auth" (credentials refused) or "tls" (the
// handshake failed), with the error.
func (s *Store) Probe(ctx context.Context, timeout time.Duration) (reason string, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return failureOf(err).String(), fmt.Errorf("cluster: %w", err)
	}
	return "", nil
}

// Stats returns the loop's counts so far.
func (s *Store) Stats() Stats {
	var last time.Time
	if ns := s.lastSync.Load(); ns != 0 {
		last = time.Unix(0, ns)
	}
	queued := 0
	ms, _, _ := s.snapshot()
	for _, m := range ms {
		m.mu.Lock()
		queued += len(m.ops)
		m.mu.Unlock()
	}
	return Stats{
		AuthErrors:       s.stats.authErrors.Load(),
		BucketMismatches: s.stats.mismatches.Load(),
		Reason:           failure(s.reason.Load()).String(),
		LastSync:         last,
		Queued:           queued,
		Lag:              time.Duration(s.lagUS.Load()) * time.Microsecond,
		Connected:        s.connected.Load(),
		Flushes:          s.stats.flushes.Load(),
		FlushErrors:      s.stats.flushErrors.Load(),
		OpsSent:          s.stats.opsSent.Load(),
		OpsReceived:      s.stats.opsReceived.Load(),
		Dropped:          s.stats.dropped.Load(),
		Disconnects:      s.stats.disconnects.Load(),
		Reconnects:       s.stats.reconnects.Load(),
		Gaps:             s.stats.gaps.Load(),
		Repairs:          s.stats.repairs.Load(),
		Loads:            s.stats.loads.Load(),
		Stale:            s.stats.stale.Load(),
		Refused:          s.stats.refused.Load(),
	}
}

// nextVersion is the version of a write made here now.
func (s *Store) nextVersion() version { return version{H: s.clock.now(), N: s.id} }

// tombstoneExpiry is when a tombstone made now expires, unix ns.
func (s *Store) tombstoneExpiry() int64 {
	return s.clock.wall().Add(s.opts.TombstoneTTL).UnixNano()
}

// Local returns the store of the node's copies of the cluster maps and
// bucket families (for metrics and inspection; writes to it are not sent).
func (s *Store) Local() *state.Store { return s.local }

// SyncInterval is the interval writes are sent at.
func (s *Store) SyncInterval() time.Duration { return s.opts.SyncInterval }

// Map returns the cluster map called name, creating it on first use; its
// entries already in Redis are loaded by the next sync.
func (s *Store) Map(name string) state.MapHandle {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m, ok := s.maps[name]; ok {
		return m
	}
	m := newMap(s, name)
	s.maps[name] = m
	return m
}

// Counter returns the cluster counter called name.
func (s *Store) Counter(name string) state.CounterHandle {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.counters[name]; ok {
		return c
	}
	c := &Counter{key: s.opts.Prefix + "c:" + name}
	s.counters[name] = c
	return c
}

// Bucket returns the cluster bucket family called name (see
// state.Store.Bucket for rate and burst).
func (s *Store) Bucket(name string, rate, burst float64) (state.BucketHandle, error) {
	shared, err := s.local.Bucket(name, rate, burst)
	if err != nil {
		return nil, err
	}
	share := s.opts.FallbackShare
	fallback, err := s.fbStore.Bucket(name, rate*share, max(1, burst*share))
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.buckets[name]; ok {
		return b, nil
	}
	// The floor bounds how far other nodes' takes can push this bucket
	// below empty: ten intervals' worth of lag.
	floor := -(burst + rate*10*s.opts.SyncInterval.Seconds())
	b := &Bucket{s: s, name: name, shared: shared, fallback: fallback, floor: math.Min(0, floor)}
	s.buckets[name] = b
	return b, nil
}

// snapshot returns the current objects, for the loops.
func (s *Store) snapshot() ([]*Map, []*Counter, []*Bucket) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ms := make([]*Map, 0, len(s.maps))
	for _, m := range s.maps {
		ms = append(ms, m)
	}
	cs := make([]*Counter, 0, len(s.counters))
	for _, c := range s.counters {
		cs = append(cs, c)
	}
	bs := make([]*Bucket, 0, len(s.buckets))
	for _, b := range s.buckets {
		bs = append(bs, b)
	}
	return ms, cs, bs
}

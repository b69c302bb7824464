package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// maxBackoff is the longest wait between two reconnection attempts.
const maxBackoff = 5 * time.Second

// failure is why the last attempt to reach Redis failed.
type failure int32

const (
	failNone failure = iota
	failDown         // no answer: refused, timed out, reset
	failAuth         // the server refused the credentials or a command
	failTLS          // the TLS handshake failed
)

func (f failure) String() string {
	switch f {
	case failDown:
		return "down"
	case failAuth:
		return "auth"
	case failTLS:
		return "tls"
	}
	return ""
}

// failureOf classifies an error of talking to Redis.
func failureOf(err error) failure {
	if err == nil {
		return failNone
	}
	var re redis.Error
	if errors.As(err, &re) {
		msg := re.Error()
		for _, p := range []string{"WRONGPASS", "NOAUTH", "NOPERM", "ERR AUTH", "ERR invalid password", "ERR Client sent AUTH"} {
			if strings.HasPrefix(msg, p) {
				return failAuth
			}
		}
	}
	var rh tls.RecordHeaderError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	var ve *tls.CertificateVerificationError
	if errors.As(err, &rh) || errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci) || errors.As(err, &ve) ||
		strings.Contains(err.Error(), "tls: ") {
		return failTLS
	}
	return failDown
}

// syncLoop sends the queued writes every interval while Redis answers,
// and tries to reconnect with exponential backoff while it does not.
func (s *Store) syncLoop(ctx context.Context) {
	tick := time.NewTicker(s.opts.SyncInterval)
	defer tick.Stop()
	backoff := s.opts.SyncInterval
	var retryAt time.Time
	down := false // an outage has been logged and counted
	var lastLog time.Time
	var failures int
	fail := func(err error) {
		s.connected.Store(false)
		retryAt = time.Now().Add(backoff)
		backoff = min(2*backoff, maxBackoff)
		if ctx.Err() != nil {
			return
		}
		why := failureOf(err)
		s.reason.Store(int32(why))
		if why == failAuth {
			s.stats.authErrors.Add(1)
		}
		failures++
		switch {
		case !down:
			down = true
			s.stats.disconnects.Add(1)
			s.log.Warn("redis unreachable: deciding on local state, fallback limits apply", "reason", why.String(), "err", err)
		case time.Since(lastLog) < s.opts.DownLogEvery:
			return
		default:
			s.log.Warn("redis still unreachable: deciding on local state, fallback limits apply", "reason", why.String(),
				"failures", failures, "err", err)
		}
		lastLog, failures = time.Now(), 0
	}
	lastSweep := time.Now()
	sweeps := 0
	for {
		if !s.connected.Load() && !time.Now().Before(retryAt) {
			if err := s.reconnect(ctx); err != nil {
				fail(err)
			}
		}
		if s.connected.Load() {
			if err := s.flush(ctx); err != nil {
				fail(err)
			} else {
				// Back only once a sync went through: a server that answers
				// PING but refuses the writes (an ACL) is still an outage.
				backoff = s.opts.SyncInterval
				s.reason.Store(int32(failNone))
				if down {
					down = false
					s.stats.reconnects.Add(1)
					s.log.Info("redis reachable again: reconciled shared state")
				}
			}
		}
		if time.Since(lastSweep) > time.Second {
			s.local.Sweep()
			s.fbStore.Sweep()
			sweeps++
			if sweeps%10 == 0 {
				ms, _, _ := s.snapshot()
				now := s.clock.wall().UnixNano()
				for _, m := range ms {
					m.sweepMetas(now)
				}
			}
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
// marks the store connected. The ping is bounded by a few intervals; the
// loads only per round trip (the client's timeouts), since a large map
// takes longer than that to read.
func (s *Store) reconnect(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, max(time.Second, 5*s.opts.SyncInterval))
	defer cancel()
	if err := s.rdb.Ping(pctx).Err(); err != nil {
		return fmt.Errorf("cluster: ping: %w", err)
	}
	if err := applyScript.Load(pctx, s.rdb).Err(); err != nil {
		return fmt.Errorf("cluster: load script: %w", err)
	}
	s.scriptLoaded.Store(true)
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

// maxOpsPerScript bounds the writes one applyScript call carries: Redis
// runs a script alone, so a long one would stall every other client.
const maxOpsPerScript = 256

// maxOpsPerFlush bounds the map writes one sync pipeline carries, so that
// a backlog (a write storm, an outage's queue) is sent over a few
// intervals rather than in one pipeline that outlasts the client's read
// timeout: 8,192 writes take Redis about 100 ms.
const maxOpsPerFlush = 8192

// scriptCall is one applyScript call in a flush's pipeline.
type scriptCall struct {
	m   *Map
	ops []mapOp
	cmd *redis.Cmd
}

// flush sends every queued write in one pipeline: map writes through
// applyScript (which publishes those Redis accepts), counter increments,
// the bucket charges (published), and every CheckEvery the anti-entropy
// check of the maps' sequence numbers.
func (s *Store) flush(ctx context.Context) error {
	if err := s.loadMaps(ctx); err != nil {
		return err
	}
	if !s.scriptLoaded.Load() {
		if err := applyScript.Load(ctx, s.rdb).Err(); err != nil {
			return fmt.Errorf("cluster: load script: %w", err)
		}
		s.scriptLoaded.Store(true)
	}
	ms, cs, bs := s.snapshot()
	pipe := s.rdb.Pipeline()
	var calls []scriptCall
	staleBefore := s.clock.wall().Add(-s.opts.TombstoneTTL).UnixMicro()
	nOps := 0
	budget := maxOpsPerFlush
	for _, m := range ms {
		ops := m.take()
		if len(ops) > budget {
			m.requeue(ops[budget:]) // the next interval sends them, still first
			ops = ops[:budget]
		}
		budget -= len(ops)
		fresh := ops[:0]
		for _, op := range ops {
			if op.Ver.H < staleBefore {
				// Older than any tombstone Redis still keeps: sending it
				// could bring a deleted key back. The copy reloads.
				s.stats.stale.Add(1)
				m.load.Store(true)
				continue
			}
			fresh = append(fresh, op)
		}
		nOps += len(fresh)
		for len(fresh) > 0 {
			n := min(len(fresh), maxOpsPerScript)
			calls = append(calls, scriptCall{m: m, ops: fresh[:n:n], cmd: s.queueScript(ctx, pipe, m, fresh[:n])})
			fresh = fresh[n:]
		}
	}
	msg := message{Node: s.opts.Node}
	for _, b := range bs {
		n := len(msg.Charges)
		msg.Charges = b.take(msg.Charges)
		if len(msg.Charges) > n {
			msg.Params = append(msg.Params, bucketParams{Bucket: b.name, Rate: b.shared.Rate(), Burst: b.shared.Burst()})
		}
	}
	deltas := make([]int64, len(cs))
	ccmds := make([]*redis.IntCmd, len(cs))
	for i, c := range cs {
		deltas[i] = c.pending.Load()
		ccmds[i] = pipe.IncrBy(ctx, c.key, deltas[i])
	}
	if len(msg.Charges) > 0 {
		payload, err := json.Marshal(msg)
		if err != nil {
			return fmt.Errorf("cluster: encode: %w", err)
		}
		pipe.Publish(ctx, s.channel, payload)
	}
	var check *redis.SliceCmd
	if len(ms) > 0 && time.Since(s.lastCheck) >= s.opts.CheckEvery {
		keys := make([]string, len(ms))
		for i, m := range ms {
			keys[i] = mapSeqKey(s.opts.Prefix, m.name)
		}
		check = pipe.MGet(ctx, keys...)
	}
	if pipe.Len() == 0 {
		// Nothing to send: a PING still finds out whether Redis answers,
		// so an outage is noticed (and fallback limits start) while idle.
		pipe.Ping(ctx)
	}
	_, err := pipe.Exec(ctx)
	if err != nil && !isReplyError(err) {
		s.stats.flushErrors.Add(1)
		for _, c := range calls {
			c.m.requeue(c.ops)
		}
		return fmt.Errorf("cluster: sync: %w", err)
	}
	s.stats.flushes.Add(1)
	s.stats.opsSent.Add(uint64(nOps + len(msg.Charges) + len(cs)))
	var denied error
	for _, c := range calls {
		if err := c.cmd.Err(); err != nil {
			switch {
			case strings.HasPrefix(err.Error(), "NOSCRIPT"):
				s.scriptLoaded.Store(false) // Redis restarted: load it again
				c.m.requeue(c.ops)
			case failureOf(err) == failAuth:
				// The ACL does not allow what the script does: an outage
				// with a reason, not writes to throw away.
				c.m.requeue(c.ops)
				denied = err
			default:
				s.stats.refused.Add(uint64(len(c.ops)))
				c.m.load.Store(true)
				if s.refusedLog.Allow(time.Now().UnixNano(), time.Minute) {
					s.log.Warn("redis refused map writes", "map", c.m.name, "writes", len(c.ops), "err", err)
				}
			}
		}
	}
	for i, c := range cs {
		if v, err := ccmds[i].Result(); err == nil {
			// Briefly counts deltas[i] twice rather than not at all.
			c.global.Store(v)
			c.pending.Add(-deltas[i])
		}
	}
	if denied != nil {
		return fmt.Errorf("cluster: sync: %w", denied)
	}
	s.lastSync.Store(time.Now().UnixNano())
	if check != nil {
		s.lastCheck = time.Now()
		if vals, err := check.Result(); err == nil {
			for i, m := range ms {
				var seq uint64
				if str, ok := vals[i].(string); ok {
					seq, _ = strconv.ParseUint(str, 10, 64)
				}
				m.check(seq)
			}
		}
	}
	return nil
}

// queueScript adds one applyScript call with ops of m to pipe.
func (s *Store) queueScript(ctx context.Context, pipe redis.Pipeliner, m *Map, ops []mapOp) *redis.Cmd {
	prefix := mapKeyPrefix(s.opts.Prefix, m.name)
	keys := make([]string, 1, 1+len(ops))
	keys[0] = mapSeqKey(s.opts.Prefix, m.name)
	args := make([]any, 3, 3+8*len(ops))
	args[0], args[1], args[2] = s.channel, m.name, s.opts.TombstoneTTL.Milliseconds()
	for _, op := range ops {
		keys = append(keys, prefix+op.Key)
		kind := "s"
		switch op.Kind {
		case opDelete:
			kind = "d"
		case opIncr:
			kind = "i"
		}
		args = append(args, kind, op.Key, op.Ver.H, op.Ver.N, op.Val, op.TTL,
			strconv.FormatFloat(op.Delta, 'g', -1, 64), strconv.FormatFloat(op.Init, 'g', -1, 64))
	}
	return applyScript.EvalSha(ctx, pipe, keys, args...)
}

// isReplyError reports whether err is an error reply of the server (a
// command that failed, say INCRBYFLOAT on a string) rather than a failure
// to talk to it.
func isReplyError(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}

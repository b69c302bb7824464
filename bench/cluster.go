package main

import (
	"context"
	"fmt"
	"os/exec"
	"time"
)

// benchRedis is where the cluster rows' redis-server listens: the router
// namespace's own loopback, beside luafw.
const benchRedis = "127.0.0.1:6399"

// clusterRows runs the realistic configuration with the rate limiter's
// state cluster-scoped on a redis-server in the router namespace, to set
// beside the realistic rows of the same run. Without redis-server the
// rows are left out.
func (b *bench) clusterRows(ctx context.Context) error {
	if _, err := exec.LookPath("redis-server"); err != nil {
		b.log.Warn("redis-server missing (scripts/deps.sh installs it): skipping the cluster rows")
		return nil
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	redis, err := b.l.Router.Command(rctx, "redis-server", "--port", "6399", "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no")
	if err != nil {
		return err
	}
	if err := redis.Start(); err != nil {
		return fmt.Errorf("redis-server: %w", err)
	}
	defer func() { cancel(); _ = redis.Wait() }()
	for i := 0; ; i++ {
		c, err := b.l.Router.Dial(ctx, "tcp", benchRedis)
		if err == nil {
			c.Close()
			break
		}
		if i == 100 {
			return fmt.Errorf("redis-server did not listen on %s: %w", benchRedis, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return b.luafw(ctx, "realistic-cluster", func(c *consumer) error {
		r := Row{ID: "udp/luafw-realistic-cluster/q1", Setup: "luafw, realistic, rate limiter state on Redis", Queues: 1}
		if err := b.flood(ctx, &r, c, 0, false); err != nil {
			return err
		}
		b.add(r)
		nr := Row{ID: "udp/luafw-realistic-cluster-new/q1", Setup: "luafw, realistic, state on Redis, unanswered flows", Queues: 1}
		if err := b.flood(ctx, &nr, c, 0, true); err != nil {
			return err
		}
		b.add(nr)
		return nil
	})
}

// clusterGoals compares the cluster rows with the realistic ones of the
// same run: packets per second and packets per consumer core.
func clusterGoals(r *Results, goal func(what, want, unit string, got float64, known, met bool)) {
	for _, pair := range [][2]string{
		{"udp/luafw-realistic-cluster/q1", "udp/luafw-realistic/q1"},
		{"udp/luafw-realistic-cluster-new/q1", "udp/luafw-realistic-new/q1"},
	} {
		c, l := r.row(pair[0]), r.row(pair[1])
		known := c != nil && l != nil
		var pps, core float64
		if known {
			pps, core = ratio(c.RecvPPS, l.RecvPPS), ratio(c.PerCore, l.PerCore)
		}
		goal(pair[0]+" vs local state: recv/s", ">= 0.90", "x", pps, known && pps > 0, pps >= 0.9)
		goal(pair[0]+" vs local state: recv/s per core", ">= 0.90", "x", core, known && core > 0, core >= 0.9)
	}
}

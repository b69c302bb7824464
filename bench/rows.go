package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// group is a set of rows sharing one consumer setup.
type group struct {
	name string
	run  func(context.Context) error
}

// runAll runs the groups (all, or those named by -only), recording a
// failing group's error and going on with the next.
func (b *bench) runAll(ctx context.Context) error {
	groups := []group{
		{"kernel", b.kernelRows},
		{"plain", b.plainRows},
		{"batched", b.batchedRows},
		{"trivial", b.trivialRows},
		{"rewrite", b.rewriteRows}, // rewrite.go
		{"realistic", b.realisticRows},
		{"cluster", b.clusterRows},
		{"tcp", b.tcpNoOffloadRows},
		{"balanced", b.balancedRows},
		{"layered", b.layeredRows},
		{"noct", b.noctRows},
		{"matched", b.matchedRows},
		{"sweep", b.sweepRows}, // sweep.go
	}
	want := map[string]bool{}
	for _, g := range strings.Split(b.opt.only, ",") {
		if g = strings.TrimSpace(g); g != "" {
			want[g] = true
		}
	}
	var errs []error
	for _, g := range groups {
		if len(want) > 0 && !want[g.name] {
			continue
		}
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("%s: not run: %w", g.name, context.Cause(ctx)))
			continue
		}
		fmt.Printf("  %-10s ...", g.name)
		if err := g.run(ctx); err != nil {
			fmt.Println(" failed")
			err = fmt.Errorf("%s: %w", g.name, err)
			b.res.Errors = append(b.res.Errors, err.Error())
			errs = append(errs, err)
			continue
		}
		fmt.Println(" done")
	}
	return errors.Join(errs...)
}

func (b *bench) add(r Row) { b.res.Rows = append(b.res.Rows, r) }

// kernelRows: no queue at all; then the kernel with conntrack on (one
// nftables rule that needs it, as luafw's ct-state rules do), which
// separates what conntrack costs every stateful firewall from what luafw's
// own rules cost.
func (b *bench) kernelRows(ctx context.Context) error {
	r := Row{ID: "udp/kernel", Setup: "kernel alone (no queue)"}
	if err := b.flood(ctx, &r, nil, 0, false); err != nil {
		return err
	}
	b.add(r)
	rt := Row{ID: "rtt/kernel", Setup: "kernel alone"}
	if err := b.roundTrips(ctx, &rt, nil); err != nil {
		return err
	}
	b.add(rt)
	if b.opt.iperf != "" {
		t := Row{ID: "tcp/kernel", Setup: "kernel alone"}
		if err := b.tcpBulk(ctx, &t, nil); err != nil {
			return err
		}
		b.add(t)
	}
	return b.withConntrack(ctx, func() error {
		u := Row{ID: "udp/kernel-ct", Setup: "kernel + conntrack, one nft rule (no queue)"}
		if err := b.flood(ctx, &u, nil, 0, false); err != nil {
			return err
		}
		b.add(u)
		if b.opt.iperf == "" {
			return nil
		}
		tc := Row{ID: "tcp/kernel-ct", Setup: "kernel + conntrack, one nft rule"}
		if err := b.tcpBulk(ctx, &tc, nil); err != nil {
			return err
		}
		b.add(tc)
		return nil
	})
}

// withConntrack runs fn with one nftables forward rule in the router that
// turns conntrack on, as luafw's rules have it (an offload test that never
// matches the bench's flows): what the kernel reaches with connection
// tracking but nothing queued.
func (b *bench) withConntrack(ctx context.Context, fn func() error) error {
	const table = "lfwbenchct"
	if _, err := b.l.Router.Shell(ctx, `nft add table ip `+table+`
nft add chain ip `+table+` forward '{ type filter hook forward priority 1; }'
nft add rule ip `+table+` forward ct mark and 0x100 == 0x100 accept`); err != nil {
		return err
	}
	err := fn()
	if _, derr := b.l.Router.Shell(context.WithoutCancel(ctx), "nft delete table ip "+table); derr != nil {
		err = errors.Join(err, derr)
	}
	return err
}

// withQueueRule installs an iptables rule in the router diverting forwarded
// UDP to queues 0..n-1, runs fn, and removes the rule.
func (b *bench) withQueueRule(ctx context.Context, n int, fn func() error) error {
	spec := "FORWARD -p udp -j NFQUEUE --queue-num 0"
	if n > 1 {
		spec = fmt.Sprintf("FORWARD -p udp -j NFQUEUE --queue-balance 0:%d", n-1)
	}
	if _, err := b.l.Router.Shell(ctx, "iptables -A "+spec); err != nil {
		return err
	}
	err := fn()
	if _, derr := b.l.Router.Shell(context.WithoutCancel(ctx), "iptables -D "+spec); derr != nil {
		err = errors.Join(err, fmt.Errorf("removing the queue rule: %w", derr))
	}
	return err
}

// baseline runs nfqbaseline (mode plain or batched) on n queues for fn.
func (b *bench) baseline(ctx context.Context, mode string, n int, fn func(*consumer) error) error {
	return b.withQueueRule(ctx, n, func() error {
		args := append([]string{"-mode", mode, "-duration", "10m"}, queueArgs(n)...)
		prof, err := b.profilePath(fmt.Sprintf("%s-q%d", mode, n))
		if err != nil {
			return err
		}
		if prof != "" {
			args = append(args, "-cpuprofile", prof)
		}
		c, err := startConsumer(ctx, b.l.Router, "nfqbaseline -mode "+mode, b.opt.baseline, args, queuesBound(ctx, b.l.Router, n))
		if err != nil {
			return err
		}
		err = c.checkComm(b.opt.baseline)
		if err == nil {
			err = fn(c)
		}
		if serr := c.stop(); serr != nil {
			return errors.Join(err, serr)
		}
		if err == nil {
			if res, rerr := c.baselineResult(); rerr != nil {
				err = rerr
			} else if res.Errors > 0 {
				b.res.Errors = append(b.res.Errors, fmt.Sprintf("nfqbaseline %s on %d queues: %d errors", mode, n, res.Errors))
			}
		}
		return err
	})
}

func (b *bench) plainRows(ctx context.Context) error {
	return b.baseline(ctx, "plain", 1, func(c *consumer) error {
		r := Row{ID: "udp/plain/q1", Setup: "go-nfqueue, verdict per packet", Queues: 1}
		if err := b.flood(ctx, &r, c, 0, false); err != nil {
			return err
		}
		b.add(r)
		rt := Row{ID: "rtt/plain", Setup: "go-nfqueue, verdict per packet", Queues: 1}
		if err := b.roundTrips(ctx, &rt, c); err != nil {
			return err
		}
		b.add(rt)
		return nil
	})
}

func (b *bench) batchedRows(ctx context.Context) error {
	return b.baseline(ctx, "batched", 1, func(c *consumer) error {
		r := Row{ID: "udp/batched/q1", Setup: "batched reader (ceiling)", Queues: 1}
		if err := b.flood(ctx, &r, c, 0, false); err != nil {
			return err
		}
		b.add(r)
		rt := Row{ID: "rtt/batched", Setup: "batched reader", Queues: 1}
		if err := b.roundTrips(ctx, &rt, c); err != nil {
			return err
		}
		b.add(rt)
		rate := b.fixedRate()
		if rate == 0 {
			return nil
		}
		fr := Row{ID: "rate/batched/q1", Setup: "batched reader (ceiling)", Queues: 1}
		if err := b.flood(ctx, &fr, c, rate, false); err != nil {
			return err
		}
		b.add(fr)
		return nil
	})
}

// fixedRate is the fixed-rate runs' pacing: -rate-pct of the batched
// reader's measured rate (0 when that is unknown).
func (b *bench) fixedRate() int {
	r := b.res.row("udp/batched/q1")
	if r == nil || r.RecvPPS <= 0 {
		return 0
	}
	return int(r.RecvPPS * float64(b.opt.ratePct) / 100)
}

// profilePath is where a consumer's CPU profile goes with -profile-dir
// (empty without it).
func (b *bench) profilePath(name string) (string, error) {
	if b.opt.profileDir == "" {
		return "", nil
	}
	dir, err := filepath.Abs(b.opt.profileDir)
	if err != nil {
		return "", fmt.Errorf("-profile-dir: %w", err)
	}
	return filepath.Join(dir, name+".cpu.pprof"), nil
}

// luafw runs luafw with the named configuration in the router for fn.
func (b *bench) luafw(ctx context.Context, config string, fn func(*consumer) error) error {
	path, ok := b.configs[config]
	if !ok {
		return fmt.Errorf("no configuration %q", config)
	}
	args := []string{"run", "--config", path, "-pidfile="}
	prof, err := b.profilePath(config)
	if err != nil {
		return err
	}
	if prof != "" {
		args = append(args, "--cpuprofile", prof)
	}
	c, err := startConsumer(ctx, b.l.Router, "luafw "+config, b.opt.luafw, args, luafwRunning)
	if err != nil {
		return err
	}
	err = c.checkComm(b.opt.luafw)
	if err == nil {
		err = fn(c)
	}
	if serr := c.stop(); serr != nil {
		err = errors.Join(err, serr)
	}
	if ctx.Err() != nil {
		return err // interrupted: luafw was killed, the lab goes next
	}
	// A luafw that did not clean up would divert the next rows.
	out, lerr := b.l.Router.Run(ctx, "nft", "list", "tables")
	if lerr == nil && strings.Contains(out, "luafw") {
		err = errors.Join(err, fmt.Errorf("luafw %s left its tables behind:\n%s", config, out))
		_, _ = b.l.Router.Shell(context.WithoutCancel(ctx), "nft delete table ip luafw; nft delete table ip6 luafw || true")
	}
	return err
}

func (b *bench) trivialRows(ctx context.Context) error {
	return b.luafw(ctx, "trivial-q1", func(c *consumer) error {
		setup := "luafw, trivial plugin"
		r := Row{ID: "udp/luafw-trivial/q1", Setup: setup, Queues: 1}
		if err := b.flood(ctx, &r, c, 0, false); err != nil {
			return err
		}
		b.add(r)
		if rate := b.fixedRate(); rate > 0 {
			fr := Row{ID: "rate/luafw-trivial/q1", Setup: setup, Queues: 1}
			if err := b.flood(ctx, &fr, c, rate, false); err != nil {
				return err
			}
			b.add(fr)
		}
		rt := Row{ID: "rtt/luafw-trivial", Setup: setup, Queues: 1}
		if err := b.roundTrips(ctx, &rt, c); err != nil {
			return err
		}
		b.add(rt)
		return nil
	})
}

func (b *bench) realisticRows(ctx context.Context) error {
	return b.luafw(ctx, "realistic-q1", func(c *consumer) error {
		setup := "luafw, realistic (10k blocklist, classify, ratelimit)"
		r := Row{ID: "udp/luafw-realistic/q1", Setup: setup, Queues: 1}
		if err := b.flood(ctx, &r, c, 0, false); err != nil {
			return err
		}
		b.add(r)
		nr := Row{ID: "udp/luafw-realistic-new/q1", Setup: "luafw, realistic, unanswered flows (every packet ct new)", Queues: 1}
		if err := b.flood(ctx, &nr, c, 0, true); err != nil {
			return err
		}
		b.add(nr)
		rt := Row{ID: "rtt/luafw-realistic", Setup: "luafw, realistic", Queues: 1}
		if err := b.roundTrips(ctx, &rt, c); err != nil {
			return err
		}
		b.add(rt)
		if b.opt.iperf == "" {
			return nil
		}
		t := Row{ID: "tcp/luafw-offload", Setup: "luafw, realistic, offload on", Queues: 1}
		if err := b.tcpBulk(ctx, &t, c); err != nil {
			return err
		}
		b.add(t)
		return nil
	})
}

// matchedRows: plugins whose matches leave the flood in the kernel.
func (b *bench) matchedRows(ctx context.Context) error {
	return b.luafw(ctx, "matched-q1", func(c *consumer) error {
		r := Row{ID: "udp/luafw-matched/q1", Setup: "luafw, SSH guard + dnsfilter with matches, flood to other ports", Queues: 1}
		if err := b.flood(ctx, &r, c, 0, false); err != nil {
			return err
		}
		b.add(r)
		return nil
	})
}

func (b *bench) tcpNoOffloadRows(ctx context.Context) error {
	if b.opt.iperf == "" {
		return nil
	}
	return b.luafw(ctx, "realistic-nooffload", func(c *consumer) error {
		t := Row{ID: "tcp/luafw-nooffload", Setup: "luafw, realistic, offload off", Queues: 1}
		if err := b.tcpBulk(ctx, &t, c); err != nil {
			return err
		}
		b.add(t)
		return nil
	})
}

func (b *bench) balancedRows(ctx context.Context) error {
	var errs []error
	errs = append(errs, b.baseline(ctx, "batched", 2, func(c *consumer) error {
		r := Row{ID: "udp/batched/q2", Setup: "batched reader (ceiling), 2 sockets", Queues: 2}
		if err := b.flood(ctx, &r, c, 0, false); err != nil {
			return err
		}
		b.add(r)
		return nil
	}))
	for _, v := range []struct{ config, id, setup string }{
		{"trivial-q2", "udp/luafw-trivial/q2", "luafw, trivial plugin"},
		{"realistic-q2", "udp/luafw-realistic/q2", "luafw, realistic (10k blocklist, classify, ratelimit)"},
	} {
		if ctx.Err() != nil {
			break
		}
		errs = append(errs, b.luafw(ctx, v.config, func(c *consumer) error {
			r := Row{ID: v.id, Setup: v.setup, Queues: 2}
			if err := b.flood(ctx, &r, c, 0, false); err != nil {
				return err
			}
			b.add(r)
			return nil
		}))
	}
	return errors.Join(errs...)
}

func (b *bench) layeredRows(ctx context.Context) error {
	return b.luafw(ctx, "layered-q1", func(c *consumer) error {
		r := Row{ID: "udp/luafw-layered/q1", Setup: "luafw, realistic as in examples/all.yaml (3 segments)", Queues: 1}
		if err := b.flood(ctx, &r, c, 0, false); err != nil {
			return err
		}
		b.add(r)
		return nil
	})
}

func (b *bench) noctRows(ctx context.Context) error {
	return b.luafw(ctx, "trivial-noct", func(c *consumer) error {
		r := Row{ID: "udp/luafw-trivial-noct/q1", Setup: "luafw, trivial plugin, conntrack: false", Queues: 1}
		if err := b.flood(ctx, &r, c, 0, false); err != nil {
			return err
		}
		b.add(r)
		return nil
	})
}

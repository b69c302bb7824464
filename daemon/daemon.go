package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/luafw/luafw/internal/watchdog"

	"github.com/luafw/luafw/config"
	"github.com/luafw/luafw/host/state/cluster"
	"github.com/luafw/luafw/internal/engine"
	"github.com/luafw/luafw/nfq/ct"
	"github.com/luafw/luafw/nfq/inject"
	"github.com/luafw/luafw/nfq/rules"
)

// Defaults of the daemon's settings.
const (
	DefaultQueueBase = config.DefaultQueueBase
	// DefaultQueueMaxLen is the kernel queue length per queue: deep enough
	// to ride out a scheduling stall of ~100ms at 150k packets/s (memory is
	// held only while packets wait).
	DefaultQueueMaxLen = 16384
	drainQuiet         = 50 * time.Millisecond // a draining queue closes after this long without packets
	drainMax           = 2 * time.Second       // ... or after this long at most
	// prebuildWait bounds how long a reload waits for the queue readers'
	// new plugin states (each build is bounded by the 2 s load budget).
	prebuildWait = 5 * time.Second
)

// Options configure a Daemon.
type Options struct {
	ConfigPath string
	Logger     *slog.Logger
	// ControlSocket is where Run answers `luafw reload` and `luafw status`
	// (see CurrentPaths); none when empty.
	ControlSocket string
	// Pidfile is where Run writes the process id; none when empty.
	Pidfile string
	// Notifier hears READY, RELOADING, STOPPING, STATUS and watchdog
	// pings (SystemdNotifier for systemd); none when nil.
	Notifier Notifier
	// Version is the build's version, for status.
	Version string
}

// Daemon serves luafw's queues for one configuration. It acts in the
// network namespace of its process (run the process inside the namespace to
// filter, as `ip netns exec NS luafw run` does); all its goroutines share it.
type Daemon struct {
	log     *slog.Logger
	cfgPath string
	eng     *engine.Engine
	cluster *cluster.Store           // nil: the local state backend
	tags    atomic.Pointer[tagMarks] // crossing tags' mark bits (tags.go); nil when none

	mu      sync.Mutex // guards what follows; held by Reload
	cfg     *config.File
	rules   rules.Set
	tables  rules.Tables // what is installed in the kernel
	bans    *banMirror   // the maps mirrored into kernel sets (bans.go)
	plan    []Segment
	runners map[string]*segRunner // by Segment.Key
	blocks  map[string]int        // queue block per segment key
	ct      *ct.Conn
	updater *ct.Updater
	marks   *markCache
	inj     *sender // injected packets (inject.go)

	segStats map[string]*segStats // by segment key, kept across reloads

	ctx            context.Context
	stopBackground context.CancelFunc // ends the updater and the table watcher
	fatal          chan error         // a failure that must stop the daemon
	wg             sync.WaitGroup
	reloads        atomic.Uint64
	failed         atomic.Uint64
	restored       atomic.Uint64 // times our tables were changed behind our back and put back
	// keepRules leaves the rules installed at shutdown (fail: closed after
	// a failure).
	keepRules bool
	// ctRefusedLogged: the kernel's refusal of NFQA_CFG_F_CONNTRACK has
	// been logged (once per run, not once per socket).
	ctRefusedLogged atomic.Bool

	svc service // control socket, service manager, watchdog (service.go)
	out outputs // decision events, capture, saved state (outputs.go)
}

// New loads the configuration and its plugins. It touches no kernel state:
// Run does.
func New(opts Options) (*Daemon, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	cfg, err := config.Load(opts.ConfigPath)
	if err != nil {
		return nil, err
	}
	specs, err := cfg.PluginSpecs()
	if err != nil {
		return nil, err
	}
	// The Go runtime's memory limit makes the GC work harder near the
	// ceiling; the engine cuts running Lua calls before it is reached.
	// Both are set once: memory_limit takes effect at start, not on reload.
	watchdog.SetMemoryCeiling(cfg.MemoryCeiling())
	cl, err := newClusterState(cfg, opts.Logger)
	if err != nil {
		return nil, err
	}
	eng := engine.New(engineOptions(cfg, opts.Logger, cl))
	if err := eng.Load(specs); err != nil {
		eng.Close()
		closeCluster(cl)
		return nil, err
	}
	d := &Daemon{log: opts.Logger, cfgPath: opts.ConfigPath, eng: eng, cfg: cfg, cluster: cl,
		runners: map[string]*segRunner{}, blocks: map[string]int{}, marks: newMarkCache(),
		segStats: map[string]*segStats{}, fatal: make(chan error, 1), ctx: context.Background()}
	d.plan = Plan(eng.HookPriorities())
	if err := CheckQueues(cfg, d.plan); err != nil {
		eng.Close()
		closeCluster(cl)
		return nil, err
	}
	d.rules = d.ruleSet(cfg, d.plan, eng)
	d.bans = newBanMirror(d.log, d.rules.Table)
	d.setTags(cfg)
	d.svc.init(opts)
	return d, nil
}

// Engine returns the daemon's engine.
func (d *Daemon) Engine() *engine.Engine { return d.eng }

// DryRun describes what Run would install.
func (d *Daemon) DryRun() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := "# segments (hook, chain priority, callbacks)\n" + Describe(d.plan) + "\n" + d.rules.String()
	for _, km := range d.eng.KernelMaps() {
		set := banSetName(km)
		out += fmt.Sprintf("# kernel bans: map %q → table inet %s, chain bans (prerouting, priority %d), sets %s_v4 %s_v6 %s_v4net %s_v6net\n",
			km.Name, d.rules.Table, rules.BanPriority, set, set, set, set)
	}
	return out
}

// Run installs the rules, serves the queues until ctx is done, then removes
// every rule it installed and drains the queues. It replaces tables of the
// same name left by an earlier run: the caller must hold the namespace's
// instance lock (AcquireInstance), or it would take a running daemon's.
func (d *Daemon) Run(ctx context.Context) error {
	if err := CheckKernel(ctx, d.cfg.ConntrackEnabled()); err != nil {
		return err
	}
	// Goroutines of the run (updater, control socket, watchdog) end with
	// it, also when a fatal error ends it.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ctl, release, err := d.claim()
	if err != nil {
		return err
	}
	defer release()
	unlock, err := d.lockOutputs()
	if err != nil {
		return err
	}
	defer unlock()
	// A crashed run may have left our tables: Install replaces them, but
	// clean first so a failure below leaves nothing of ours behind. Not
	// with fail: closed, where the stale tables keep traffic blocked until
	// Install swaps them in one transaction (or for good, if we fail).
	if !d.cfg.FailClosed() {
		if err := rules.Remove(ctx, d.rules.Table); err != nil {
			return fmt.Errorf("removing stale rules: %w", err)
		}
	}
	// Stale bans go in any case: the mirror fills the sets anew from the
	// maps.
	if err := rules.RemoveBans(ctx, d.rules.Table); err != nil {
		return fmt.Errorf("removing stale bans: %w", err)
	}
	// The background goroutines stop with shutdown, also when Run ends
	// on an error while the caller's ctx is still live.
	ctx, d.stopBackground = context.WithCancel(ctx)
	d.mu.Lock()
	d.ctx = ctx
	d.mu.Unlock()
	inj, err := inject.Open()
	if err != nil {
		return err
	}
	d.inj = newSender(inj, d.rules, d.log)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.inj.run(ctx)
	}()
	if d.cfg.ConntrackEnabled() {
		conn, err := ct.Open()
		if err != nil {
			return fmt.Errorf("conntrack: %w", err)
		}
		d.ct = conn
		d.updater = ct.NewUpdater(conn, 4096, d.log)
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			if err := d.updater.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				d.log.Error("conntrack updater stopped", "err", err)
			}
		}()
	}
	if err := d.startOutputs(ctx); err != nil {
		cancel()
		d.shutdown()
		return err
	}
	// The bans chain goes in before the diversions: at an equal priority
	// the one registered first runs first.
	if err := d.bans.start(ctx, d.eng.KernelMaps()); err != nil {
		cancel()
		d.shutdown()
		return fmt.Errorf("kernel bans: %w", err)
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.bans.run(ctx)
	}()
	d.mu.Lock()
	_, err = d.apply(d.plan, d.rules)
	d.mu.Unlock()
	if err != nil {
		d.keepRules = d.cfg.FailClosed() // stale tables, if any, stay closed
		cancel()
		d.shutdown()
		return err
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.watchTables(ctx, tableCheckInterval)
	}()
	sockets, queues := d.queueCount()
	d.log.Info("luafw running", "segments", len(d.plan), "sockets", sockets, "queues", queues, "table", d.rules.Table,
		"conntrack", d.cfg.ConntrackEnabled(), "generation", d.eng.Generation())
	d.serviceReady(ctx, ctl)
	select {
	case <-ctx.Done():
		d.shutdown()
		return nil
	case err := <-d.fatal:
		d.log.Error("stopping: luafw can no longer filter as configured", "err", err)
		d.keepRules = d.cfg.FailClosed()
		cancel()
		d.shutdown()
		return err
	}
}

// fail reports an error that must stop the daemon (the first one wins).
func (d *Daemon) fail(err error) {
	select {
	case d.fatal <- err:
	default:
	}
}

// shutdown removes our rules first (traffic then flows without us), then
// lets the queues drain and closes them. With keepRules (a failure under
// fail: closed) the rules stay and nothing they divert passes.
func (d *Daemon) shutdown() {
	d.serviceStopping()
	if d.stopBackground != nil {
		d.stopBackground()
	}
	rmCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d.mu.Lock()
	// Under mu, so the table watcher cannot put them back.
	if d.keepRules {
		d.log.Warn("fail: closed: leaving the rules in place; what they divert is dropped until luafw runs again", "table", d.rules.Table)
	} else if err := d.tables.Remove(rmCtx); err != nil {
		d.log.Error("removing rules", "table", d.rules.Table, "err", err)
	} else {
		d.log.Info("rules removed", "table", d.rules.Table)
	}
	runners := make([]*segRunner, 0, len(d.runners))
	for _, r := range d.runners {
		runners = append(runners, r)
	}
	d.runners = map[string]*segRunner{}
	d.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.drainAndStop()
		}()
	}
	wg.Wait()
	d.wg.Wait() // the bans mirror has stopped
	if d.bans != nil && !d.keepRules {
		if err := d.bans.remove(rmCtx); err != nil {
			d.log.Error("removing the kernel bans", "table", d.rules.Table, "err", err)
		}
	}
	d.stopOutputs()
	if d.ct != nil {
		d.ct.Close()
	}
	d.eng.Close()
	closeCluster(d.cluster)
}

// Reload reads the configuration again and swaps plugins and rules. On any
// error the running set stays as it was.
func (d *Daemon) Reload() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	err := d.reload()
	if err != nil {
		d.failed.Add(1)
		d.log.Error("reload failed; the running set is kept", "err", err)
		return err
	}
	d.reloads.Add(1)
	return nil
}

func (d *Daemon) reload() error {
	cfg, err := config.Load(d.cfgPath)
	if err != nil {
		return err
	}
	specs, err := cfg.PluginSpecs()
	if err != nil {
		return err
	}
	if !sameQueue(cfg.Queue, d.cfg.Queue) || cfg.ConntrackEnabled() != d.cfg.ConntrackEnabled() || cfg.FailClosed() != d.cfg.FailClosed() {
		d.log.Warn("queue, conntrack and fail settings change only on restart; keeping the running ones")
		cfg.Queue, cfg.Conntrack, cfg.Fail = d.cfg.Queue, d.cfg.Conntrack, d.cfg.Fail
	}
	d.keepOutputs(cfg)
	d.keepStateBackend(cfg)
	if markOr(cfg.Marks.Skip) != markOr(d.cfg.Marks.Skip) || markOr(cfg.Marks.Reject) != markOr(d.cfg.Marks.Reject) ||
		cfg.TagMarks() != d.cfg.TagMarks() {
		// The queue readers apply the marks they started with.
		d.log.Warn("marks change only on restart; keeping the running ones")
		cfg.Marks = d.cfg.Marks
	}
	// The engine checks the new set first and swaps atomically; the rules
	// follow. If the rules fail, the set that ran before comes back (its
	// compiled code, not its files, which may have changed on disk).
	next, err := d.eng.PrepareContext(d.ctx, specs)
	if err != nil {
		return err
	}
	plan := Plan(next.HookPriorities())
	rs := d.ruleSet(cfg, plan, next)
	if err := CheckQueues(cfg, plan); err != nil {
		return err
	}
	prev := d.eng.Commit(next)
	change, err := d.apply(plan, rs)
	if err != nil {
		d.eng.Commit(prev)
		d.forgetBlocks()
		return err
	}
	d.setTags(cfg)
	d.cfg, d.plan, d.rules = cfg, plan, rs
	// The kernel bans follow: the mirror installs the sets of maps added
	// (and fills them) or drops those of maps gone, in its goroutine.
	select {
	case err := <-d.bans.configure(d.eng.KernelMaps()):
		if err != nil {
			d.log.Error("reload: kernel bans: installing the sets failed; the previous ones stay", "err", err)
		}
	case <-time.After(banReconcileWait):
		d.log.Warn("reload: kernel bans: the sets are not installed yet")
	}
	// The queue readers build their states of the new plugins off the
	// packet path; wait for them, so that the new set is in force at each
	// queue's next packet when the reload answers. Each build is bounded by
	// the load budget; past prebuildWait a reader keeps the previous set
	// until its builds are done.
	pctx, cancel := context.WithTimeout(d.ctx, prebuildWait)
	if err := d.eng.PrebuildWorkers(pctx); err != nil {
		d.log.Warn("reload: queue readers run the previous set until their new states are built", "err", err)
	}
	cancel()
	d.log.Info("reloaded", "generation", d.eng.Generation(), "segments", len(plan), "kernel", change.String())
	return nil
}

// forgetBlocks drops the queue blocks of segments not in the running plan
// (after a reload that failed). Called with mu held.
func (d *Daemon) forgetBlocks() {
	for key := range d.blocks {
		if !slices.ContainsFunc(d.plan, func(s Segment) bool { return s.Key() == key }) {
			delete(d.blocks, key)
		}
	}
}

func markOr(h *config.Hex) uint64 {
	if h == nil {
		return 0
	}
	return uint64(*h)
}

// sameQueue compares queue settings by value (the optional ones are
// pointers).
func sameQueue(a, b config.Queue) bool {
	return a.Base == b.Base && a.Balance == b.Balance && a.MaxLen == b.MaxLen && a.Burst == b.Burst &&
		boolOr(a.FailOpen, true) == boolOr(b.FailOpen, true) && boolOr(a.GSO, true) == boolOr(b.GSO, true)
}

// apply starts the queues the plan needs, brings the rules in line (in one
// transaction, touching only what changed) and stops the queues no longer
// diverted to. Queues of segments in both plans keep their readers. Called
// with mu held.
func (d *Daemon) apply(plan []Segment, rs rules.Set) (rules.Change, error) {
	want := map[string]bool{}
	var started []*segRunner
	undo := func() {
		for _, s := range started {
			s.stop()
			delete(d.runners, s.key)
		}
	}
	for _, seg := range plan {
		want[seg.Key()] = true
		if _, ok := d.runners[seg.Key()]; ok {
			continue
		}
		r, err := d.startRunner(seg)
		if err != nil {
			undo()
			return rules.ChangeNone, err
		}
		started = append(started, r)
	}
	change, err := d.tables.Apply(d.ctx, rs)
	if err != nil {
		undo()
		return rules.ChangeNone, fmt.Errorf("installing rules: %w", err)
	}
	for _, seg := range plan {
		d.runners[seg.Key()].seg.Store(&seg) // Lo, Hi and Last may have changed
	}
	for key, r := range d.runners {
		if !want[key] {
			delete(d.runners, key)
			delete(d.blocks, key)
			go r.drainAndStop()
		}
	}
	return change, nil
}

// queueCount returns how many sockets serve how many queues.
func (d *Daemon) queueCount() (sockets, queues int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range d.runners {
		for _, s := range r.socks {
			sockets++
			queues += len(s.Info().Queues)
		}
	}
	return sockets, queues
}

// statsFor returns a segment's counters. Called with mu held.
func (d *Daemon) statsFor(key string) *segStats {
	s, ok := d.segStats[key]
	if !ok {
		s = &segStats{}
		d.segStats[key] = s
	}
	return s
}

// CheckKernel verifies what luafw needs from the kernel, in the current
// network namespace, and names each missing piece.
func CheckKernel(ctx context.Context, conntrack bool) error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (or CAP_NET_ADMIN): luafw run installs nftables rules and binds NFQUEUE")
	} else {
		if _, err := os.Stat("/proc/net/netfilter/nfnetlink_queue"); err != nil {
			missing = append(missing, "NFQUEUE (nfnetlink_queue): /proc/net/netfilter/nfnetlink_queue is missing")
		}
		if _, err := rules.Installed(ctx, rules.DefaultTable); err != nil {
			missing = append(missing, fmt.Sprintf("nftables over netlink (nf_tables): %v", err))
		}
		if conntrack {
			if conn, err := ct.Open(); err != nil {
				missing = append(missing, fmt.Sprintf("conntrack over netlink (nf_conntrack_netlink), or set conntrack: false: %v", err))
			} else {
				conn.Close()
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("luafw run cannot start:\n  - %s", strings.Join(missing, "\n  - "))
	}
	return nil
}

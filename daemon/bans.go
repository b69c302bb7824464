package daemon

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/netip"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/luafw/luafw/host/state"
	"github.com/luafw/luafw/internal/engine"
	"github.com/luafw/luafw/internal/tokenbucket"
	"github.com/luafw/luafw/nfq/rules"
)

// The kernel bans: every state map a plugin opens with kernel = "drop" is
// mirrored into nftables sets of table "inet <table>" (nfq/rules.BanTable)
// whose rule drops a packet from a source in them in prerouting, before
// any queue. The mirror observes the map's local copy (host/state), which
// every write goes through: the plugins' own, the fleet's (the cluster
// applies them there), the operator's (`luafw state`) and loads. Changes
// are queued per map (bounded) and sent by one goroutine in batched
// netlink transactions a few milliseconds after the first one arrives;
// a full queue or a failed transaction makes it replace the whole set
// from the map instead. The packet path only appends to a slice.

const (
	// banQueue is the most changes of one map waiting to be sent; past
	// it they are dropped and the set is rebuilt from the map.
	banQueue = 1 << 17
	// banLinger is how long the mirror collects changes after the first
	// before sending them; banFlushAt sends at once.
	banLinger  = 5 * time.Millisecond
	banFlushAt = 2048
	// banRetry is the least time between two rebuilds of a map's sets.
	banRetry = time.Second
	// banRefreshMargin: an element the kernel holds for less than this
	// more is not deleted before it is added again with a new timeout
	// (the kernel may have dropped it by the time the transaction runs).
	banRefreshMargin = 50 * time.Millisecond
	// banReconcileWait bounds how long a reload waits for the sets of
	// the new plugin set to be installed.
	banReconcileWait = 2 * time.Second
	// banPrune is how often elements that expired are forgotten (until
	// then a prefix inside an expired one still counts as overlapping)
	// and the table is checked (put back if someone deleted it).
	banPrune = 5 * time.Second
)

// BanStatus is one map mirrored into the kernel, as `luafw status` shows
// it.
type BanStatus struct {
	Map   string `json:"map"`
	Scope string `json:"scope"` // local, cluster
	// Set is the kernel sets' common name: `nft list set inet TABLE
	// SET_v4` (and _v6, _v4net, _v6net) show them.
	Set      string `json:"set"`
	Elements int    `json:"elements"` // in the kernel, as sent (less what expired since the last prune)
	Sent     uint64 `json:"sent"`     // elements added or deleted
	// Refused counts keys that are not an address or prefix in canonical
	// form, or a prefix overlapping another; they stay in the map only.
	Refused   uint64 `json:"refused"`
	Overflows uint64 `json:"overflows"` // queue full: set rebuilt
	Rebuilds  uint64 `json:"rebuilds"`  // set replaced from the map (start, overflow, error)
	Errors    uint64 `json:"errors"`    // failed transactions
}

// banMirror keeps the ban sets in line with the maps.
type banMirror struct {
	log   *slog.Logger
	table string
	kt    rules.BanTable // used by start, then only by run
	wake  chan struct{}
	// every is how often run forgets expired elements and checks that
	// the table is still there (banPrune; tests shorten it).
	every time.Duration

	mu   sync.Mutex
	want []*banMap // the maps to mirror, from the running plugins
	gen  uint64    // bumped when want changes
	maps []*banMap // mirrored now (run's)
	// done hears the result of installing want (configure's caller
	// waits for it).
	done chan error
}

// banMap is one mirrored map.
type banMap struct {
	km  engine.KernelMap
	set string
	m   *banMirror

	mu      sync.Mutex
	pending []state.Change
	rebuild bool // overflow, failure or start: replace the set from the map
	// lastRebuild is when the last rebuild started (run's).
	lastRebuild time.Time

	// view is what the sets hold (run's): deletes go only for what is
	// there, and a prefix must not overlap another.
	view *banView
	n    atomic.Int64 // elements in view, for Status

	sent, refused, overflows, rebuilds, errors atomic.Uint64
	warned                                     tokenbucket.Every
}

func newBanMirror(log *slog.Logger, table string) *banMirror {
	return &banMirror{log: log, table: table, wake: make(chan struct{}, 1), every: banPrune}
}

var banNameRE = regexp.MustCompile(`^[A-Za-z0-9_]{1,40}$`)

// banSetName is the kernel sets' name for a map: scope_name, or with a
// hash of the name when it has other characters or is long.
func banSetName(km engine.KernelMap) string {
	scope := "local"
	if km.Cluster {
		scope = "cluster"
	}
	if banNameRE.MatchString(km.Name) {
		return scope + "_" + km.Name
	}
	h := fnv.New32a()
	h.Write([]byte(km.Name))
	clean := []byte(km.Name)
	for i, c := range clean {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			clean[i] = '_'
		}
	}
	if len(clean) > 30 {
		clean = clean[:30]
	}
	return fmt.Sprintf("%s_%s_%08x", scope, clean, h.Sum32())
}

// configure sets the maps to mirror; run picks them up and answers on
// the channel returned once their sets are installed.
func (bm *banMirror) configure(kms []engine.KernelMap) <-chan error {
	var want []*banMap
	for _, km := range kms {
		if km.Map == nil {
			bm.log.Warn("state map with kernel = \"drop\": this state backend has no local copy to mirror; not in the kernel", "map", km.Name)
			continue
		}
		want = append(want, &banMap{km: km, set: banSetName(km), m: bm, rebuild: true, view: newBanView()})
	}
	bm.mu.Lock()
	// Keep the maps mirrored already (their kernel view and counters).
	for i, w := range want {
		for _, cur := range bm.maps {
			if cur.set == w.set && cur.km.Map == w.km.Map {
				want[i] = cur
			}
		}
	}
	bm.want = want
	bm.gen++
	done := make(chan error, 1)
	bm.done = done
	bm.mu.Unlock()
	bm.poke()
	return done
}

func (bm *banMirror) poke() {
	select {
	case bm.wake <- struct{}{}:
	default:
	}
}

// reconcile installs the sets of the wanted maps and observes them; it
// reports whether the set list could be installed.
func (bm *banMirror) reconcile(ctx context.Context) (err error) {
	bm.mu.Lock()
	want, cur, done := bm.want, bm.maps, bm.done
	bm.mu.Unlock()
	defer func() {
		if done != nil {
			done <- err
		}
	}()
	sets := make([]string, len(want))
	for i, w := range want {
		sets[i] = w.set
	}
	if err := bm.kt.Install(ctx, bm.table, sets); err != nil {
		return err
	}
	for _, c := range cur {
		if !containsMap(want, c) {
			c.km.Map.Observe(nil)
		}
	}
	for _, w := range want {
		if !containsMap(cur, w) {
			w.km.Map.Observe(w.observe)
			scope := "local"
			if w.km.Cluster {
				scope = "cluster"
			}
			bm.log.Info("state map mirrored into the kernel", "map", w.km.Name, "scope", scope,
				"sets", fmt.Sprintf("inet %s %s_v4 %s_v6 %s_v4net %s_v6net", bm.table, w.set, w.set, w.set, w.set))
		}
	}
	bm.mu.Lock()
	bm.maps = want
	bm.mu.Unlock()
	return nil
}

func containsMap(ms []*banMap, m *banMap) bool {
	for _, x := range ms {
		if x == m {
			return true
		}
	}
	return false
}

// start installs the table and fills the sets before the diversion rules
// are installed (so the bans chain comes first at equal priority).
func (bm *banMirror) start(ctx context.Context, kms []engine.KernelMap) error {
	_ = bm.configure(kms)
	<-bm.wake // configure's poke: start does what run would
	if err := bm.reconcile(ctx); err != nil {
		return err
	}
	bm.flush(ctx)
	return nil
}

// run sends the maps' changes until ctx ends.
func (bm *banMirror) run(ctx context.Context) {
	var gen uint64
	bm.mu.Lock()
	gen = bm.gen
	bm.mu.Unlock()
	prune := time.NewTicker(bm.every)
	defer prune.Stop()
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			bm.stop()
			return
		case <-prune.C:
			bm.prune()
			bm.check(ctx)
			continue
		case <-retry.C:
		case <-bm.wake:
			if bm.queued() < banFlushAt {
				select {
				case <-ctx.Done():
					bm.stop()
					return
				case <-time.After(banLinger):
				}
			}
		}
		bm.mu.Lock()
		g := bm.gen
		bm.mu.Unlock()
		if g != gen {
			if err := bm.reconcile(ctx); err != nil {
				bm.log.Error("kernel bans: installing the sets failed; the previous ones stay", "err", err)
			}
			gen = g
		}
		if next := bm.flush(ctx); !next.IsZero() {
			retry.Reset(time.Until(next))
		}
	}
}

// check puts the table back if someone removed it, and refills the sets.
func (bm *banMirror) check(ctx context.Context) {
	redone, err := bm.kt.Check(ctx)
	if err != nil {
		bm.log.Error("kernel bans: the table was changed behind our back and cannot be put back", "err", err)
		return
	}
	if !redone {
		return
	}
	bm.log.Warn("kernel bans: the table was changed behind our back; put back and refilled from the maps", "table", bm.table)
	bm.mu.Lock()
	maps := bm.maps
	bm.mu.Unlock()
	for _, m := range maps {
		m.mu.Lock()
		m.rebuild, m.pending = true, nil
		m.lastRebuild = time.Time{}
		m.mu.Unlock()
	}
	bm.flush(ctx)
}

// stop stops observing the maps.
func (bm *banMirror) stop() {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	for _, m := range bm.maps {
		m.km.Map.Observe(nil)
	}
}

// remove deletes the table (daemon stop).
func (bm *banMirror) remove(ctx context.Context) error { return bm.kt.Remove(ctx) }

func (bm *banMirror) queued() int {
	bm.mu.Lock()
	maps := bm.maps
	bm.mu.Unlock()
	n := 0
	for _, m := range maps {
		m.mu.Lock()
		n += len(m.pending)
		m.mu.Unlock()
	}
	return n
}

// observe is the map's observer: it runs with a shard of the map locked,
// on the packet path when a plugin writes.
func (m *banMap) observe(c state.Change) {
	m.mu.Lock()
	n := len(m.pending)
	switch {
	case m.rebuild:
	case n >= banQueue:
		m.rebuild, m.pending = true, nil
		m.overflows.Add(1)
	default:
		m.pending = append(m.pending, c)
		n++
	}
	m.mu.Unlock()
	if n == 1 || n == banFlushAt {
		m.m.poke()
	}
}

// flush sends every map's changes, and returns when a failed map should
// be tried again (zero: none failed).
func (bm *banMirror) flush(ctx context.Context) time.Time {
	bm.mu.Lock()
	maps := bm.maps
	bm.mu.Unlock()
	var next time.Time
	for _, m := range maps {
		if t := m.flush(ctx); !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	return next
}

// flush sends m's changes, or rebuilds its set.
func (m *banMap) flush(ctx context.Context) time.Time {
	m.mu.Lock()
	changes, rebuild := m.pending, m.rebuild
	m.pending = nil
	// Rebuilds (each reads the whole map) start at most every banRetry:
	// a write storm that keeps overflowing the queue, or a kernel that
	// keeps failing, costs one a second.
	if next := m.lastRebuild.Add(banRetry); rebuild && time.Now().Before(next) {
		m.mu.Unlock()
		return next
	}
	m.rebuild = false
	m.mu.Unlock()
	var err error
	if rebuild {
		m.lastRebuild = time.Now()
		err = m.replace(ctx)
	} else if len(changes) > 0 {
		err = m.update(ctx, changes)
	}
	if err == nil {
		return time.Time{}
	}
	m.errors.Add(1)
	m.logf("kernel bans: a transaction failed; rebuilding the set from the map", "err", err)
	m.mu.Lock()
	m.rebuild, m.pending = true, nil
	m.mu.Unlock()
	if next := m.lastRebuild.Add(banRetry); time.Now().Before(next) {
		return next
	}
	m.m.poke()
	return time.Time{}
}

// logf logs at most every 10 s per map.
func (m *banMap) logf(msg string, args ...any) {
	if !m.warned.Allow(time.Now().UnixNano(), 10*time.Second) {
		return
	}
	m.m.log.Warn(msg, append([]any{"map", m.km.Name, "set", m.set}, args...)...)
}

// banKey parses a map key as an address or prefix in canonical form.
func banKey(key string) (netip.Prefix, bool) {
	if a, err := netip.ParseAddr(key); err == nil {
		if a.Zone() != "" || a.String() != key {
			return netip.Prefix{}, false
		}
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	p, err := netip.ParsePrefix(key)
	if err != nil || p.Masked() != p || p.String() != key || p.IsSingleIP() {
		return netip.Prefix{}, false
	}
	return p, true
}

// timeout is the kernel timeout of an entry expiring at exp (unix ns),
// rounded up to the millisecond; ok is false when it has expired.
func timeout(exp, now int64) (time.Duration, bool) {
	if exp == 0 {
		return 0, true
	}
	left := exp - now
	if left <= 0 {
		return 0, false
	}
	return time.Duration((left + int64(time.Millisecond) - 1) / int64(time.Millisecond) * int64(time.Millisecond)), true
}

// live reports whether the kernel still holds an element expiring at exp.
func live(exp, now int64) bool { return exp == 0 || exp > now }

// banView is what a map's kernel sets hold, as the mirror sent it: each
// element's expiry (unix ns, 0 never), and an index of the prefixes that
// tells in O(address bits) whether a new prefix overlaps one of them (the
// kernel refuses overlapping intervals; addresses have their own sets).
type banView struct {
	exp  map[netip.Prefix]int64
	nets map[netip.Prefix]bool // the prefixes held (not addresses)
	// inner counts, for each prefix r shorter than some held prefix,
	// the held prefixes strictly inside r.
	inner map[netip.Prefix]int
}

func newBanView() *banView {
	return &banView{exp: map[netip.Prefix]int64{}, nets: map[netip.Prefix]bool{}, inner: map[netip.Prefix]int{}}
}

// ancestors calls fn with each prefix strictly containing p.
func ancestors(p netip.Prefix, fn func(netip.Prefix)) {
	for b := 0; b < p.Bits(); b++ {
		fn(netip.PrefixFrom(p.Addr(), b).Masked())
	}
}

func (v *banView) put(p netip.Prefix, exp int64) {
	if _, had := v.exp[p]; !had && !p.IsSingleIP() {
		v.nets[p] = true
		ancestors(p, func(r netip.Prefix) { v.inner[r]++ })
	}
	v.exp[p] = exp
}

func (v *banView) drop(p netip.Prefix) {
	if _, had := v.exp[p]; !had {
		return
	}
	delete(v.exp, p)
	if !p.IsSingleIP() {
		delete(v.nets, p)
		ancestors(p, func(r netip.Prefix) {
			if v.inner[r]--; v.inner[r] <= 0 {
				delete(v.inner, r)
			}
		})
	}
}

// overlaps reports whether prefix p overlaps a prefix held other than p
// itself. A containing prefix that has expired is forgotten on the way;
// one inside p counts until prune forgets it.
func (v *banView) overlaps(p netip.Prefix, now int64) bool {
	if p.IsSingleIP() {
		return false
	}
	for b := 0; b < p.Bits(); b++ {
		q := netip.PrefixFrom(p.Addr(), b).Masked()
		if v.nets[q] {
			if live(v.exp[q], now) {
				return true
			}
			v.drop(q)
		}
	}
	return v.inner[p] > 0
}

// prune forgets the elements that expired.
func (v *banView) prune(now int64) {
	for p, exp := range v.exp {
		if !live(exp, now) {
			v.drop(p)
		}
	}
}

// update sends changes: the last change of each key wins. The view
// follows at once; if the transaction fails, the rebuild that follows
// makes a new one.
func (m *banMap) update(ctx context.Context, changes []state.Change) error {
	last := make(map[string]state.Change, len(changes))
	for _, c := range changes {
		last[c.Key] = c
	}
	now := time.Now().UnixNano()
	var add []rules.BanElem
	var del []netip.Prefix
	for key, c := range last {
		p, ok := banKey(key)
		if !ok {
			if !c.Deleted {
				m.refused.Add(1)
				m.logf("kernel bans: a key that is not an address or prefix in canonical form stays out of the kernel", "key", key)
			}
			continue
		}
		exp, had := m.view.exp[p]
		if c.Deleted {
			m.view.drop(p)
			if had && live(exp, now+int64(time.Millisecond)) {
				del = append(del, p)
			}
			continue
		}
		to, ok := timeout(c.Exp, now)
		if !ok { // expired already: so has, or will have, the element
			m.view.drop(p)
			continue
		}
		if !had && m.view.overlaps(p, now) {
			m.refused.Add(1)
			m.logf("kernel bans: a prefix overlapping another stays out of the kernel", "key", key)
			continue
		}
		if had && live(exp, now+int64(banRefreshMargin)) {
			// A new timeout: kernels before 6.10 keep an element's
			// first timeout when it is added again, so delete it first
			// (in the same transaction: no gap).
			del = append(del, p)
		}
		add = append(add, rules.BanElem{Prefix: p, Timeout: to})
		m.view.put(p, c.Exp)
	}
	m.n.Store(int64(len(m.view.exp)))
	if len(add)+len(del) == 0 {
		return nil
	}
	if err := m.m.kt.Update(ctx, m.set, add, del); err != nil {
		return err
	}
	m.sent.Add(uint64(len(add) + len(del)))
	return nil
}

// replace makes the sets hold exactly the map's live address keys.
func (m *banMap) replace(ctx context.Context) error {
	m.rebuilds.Add(1)
	now := time.Now().UnixNano()
	view := newBanView()
	var all []rules.BanElem
	for _, e := range m.km.Map.Entries() {
		p, ok := banKey(e.Key)
		if !ok {
			m.refused.Add(1)
			continue
		}
		var exp int64
		if !e.Expires.IsZero() {
			exp = e.Expires.UnixNano()
		}
		to, ok := timeout(exp, now)
		if !ok {
			continue
		}
		if view.overlaps(p, now) {
			m.refused.Add(1)
			continue
		}
		view.put(p, exp)
		all = append(all, rules.BanElem{Prefix: p, Timeout: to})
	}
	if err := m.m.kt.Replace(ctx, m.set, all); err != nil {
		return err
	}
	m.view = view
	m.n.Store(int64(len(view.exp)))
	m.sent.Add(uint64(len(all)))
	return nil
}

// prune forgets elements that expired (run's).
func (bm *banMirror) prune() {
	bm.mu.Lock()
	maps := bm.maps
	bm.mu.Unlock()
	now := time.Now().UnixNano()
	for _, m := range maps {
		m.view.prune(now)
		m.n.Store(int64(len(m.view.exp)))
	}
}

// status reports the mirrored maps.
func (bm *banMirror) status() []BanStatus {
	if bm == nil {
		return nil
	}
	bm.mu.Lock()
	maps := bm.maps
	bm.mu.Unlock()
	out := make([]BanStatus, 0, len(maps))
	for _, m := range maps {
		scope := "local"
		if m.km.Cluster {
			scope = "cluster"
		}
		out = append(out, BanStatus{Map: m.km.Name, Scope: scope, Set: m.set, Elements: int(m.n.Load()),
			Sent: m.sent.Load(), Refused: m.refused.Load(), Overflows: m.overflows.Load(),
			Rebuilds: m.rebuilds.Load(), Errors: m.errors.Load()})
	}
	return out
}

// banCollector exports the mirror's counters (docs/metrics.md).
type banCollector struct {
	d               *Daemon
	elements, total *prometheus.Desc
}

func newBanCollector(d *Daemon) *banCollector {
	lbl := []string{"map", "scope"}
	return &banCollector{d: d,
		elements: prometheus.NewDesc("luafw_kernel_bans_elements", "Elements of a map mirrored into the kernel's ban sets (kernel = \"drop\"), as sent.", lbl, nil),
		total: prometheus.NewDesc("luafw_kernel_bans_total",
			"What the kernel ban mirror did, by map: elements sent (added or deleted), keys refused (not an address or prefix, overlapping prefix), overflows (queue full), rebuilds (sets replaced from the map), errors (failed transactions).",
			append(lbl, "what"), nil),
	}
}

func (c *banCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.elements
	ch <- c.total
}

func (c *banCollector) Collect(ch chan<- prometheus.Metric) {
	for _, b := range c.d.bans.status() {
		ch <- prometheus.MustNewConstMetric(c.elements, prometheus.GaugeValue, float64(b.Elements), b.Map, b.Scope)
		for what, v := range map[string]uint64{"sent": b.Sent, "refused": b.Refused, "overflow": b.Overflows, "rebuild": b.Rebuilds, "error": b.Errors} {
			ch <- prometheus.MustNewConstMetric(c.total, prometheus.CounterValue, float64(v), b.Map, b.Scope, what)
		}
	}
}

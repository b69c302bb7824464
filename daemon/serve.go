package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/luafw/luafw/config"
	"github.com/luafw/luafw/host/packet"
	"github.com/luafw/luafw/internal/engine"
	"github.com/luafw/luafw/netfilter"
	"github.com/luafw/luafw/nfq/ct"
	"github.com/luafw/luafw/nfq/queue"
	"github.com/luafw/luafw/nfq/rules"
)

func boolOr(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

func (d *Daemon) balance() int { return max(1, d.cfg.Queue.Balance) }

func (d *Daemon) blockSize() int {
	if d.cfg.ConntrackEnabled() {
		return netfilter.NumCTStates * d.balance()
	}
	return d.balance()
}

// byState reports whether a segment's packets are dispatched by conntrack
// state. Before the conntrack stage a packet has no entry yet (an nft
// ct state match would call every packet invalid): scripts there see no
// state.
func (d *Daemon) byState(seg Segment) bool {
	return d.cfg.ConntrackEnabled() && int(seg.ChainPriority) > engine.PriorityConntrack
}

// allocBlock gives a segment its block of queue numbers, the same one for
// as long as the segment exists.
func (d *Daemon) allocBlock(key string) int {
	if b, ok := d.blocks[key]; ok {
		return b
	}
	used := map[int]bool{}
	for _, b := range d.blocks {
		used[b] = true
	}
	b := 0
	for used[b] {
		b++
	}
	d.blocks[key] = b
	return b
}

// queueFirst is the first queue number of a segment's block for ct state
// index s (0 without conntrack).
func (d *Daemon) queueFirst(block, s int) uint16 {
	base := int(d.cfg.Queue.Base)
	if base == 0 {
		base = DefaultQueueBase
	}
	return uint16(base + block*d.blockSize() + s*d.balance())
}

// ruleSet builds the diversion rules for a plan; each diversion is
// narrowed to what its callbacks' matches (from ms) want.
func (d *Daemon) ruleSet(cfg *config.File, plan []Segment, ms matchSource) rules.Set {
	rs := rules.Set{Table: cfg.Table, CTLabels: cfg.ConntrackEnabled(), ConnMarkOffload: uint32(cfg.Offload.Mask),
		ConnMarkDrop: uint32(cfg.Offload.Drop),
		FailClosed:   cfg.FailClosed()}
	if cfg.Marks.Skip != nil {
		rs.SkipMark = uint32(*cfg.Marks.Skip)
	}
	if cfg.Marks.Reject != nil {
		rs.RejectMark = uint32(*cfg.Marks.Reject)
	}
	if rs.Table == "" {
		rs.Table = rules.DefaultTable
	}
	if rs.SkipMark == 0 {
		rs.SkipMark = rules.DefaultSkipMark
	}
	rs.InjectMark = rules.DefaultInjectMark
	if cfg.Marks.Inject != nil {
		rs.InjectMark = uint32(*cfg.Marks.Inject)
	}
	if rs.RejectMark == 0 {
		rs.RejectMark = rules.DefaultRejectMark
	}
	for _, seg := range plan {
		block := d.allocBlock(seg.Key())
		div := rules.Diversion{Hook: seg.Hook, Priority: seg.ChainPriority, Filter: filterFor(cfg, seg.Hook),
			Matches: segmentMatches(ms, seg)}
		if d.byState(seg) {
			div.ByState = true
			for s := range div.Queues {
				div.Queues[s] = rules.QueueSet{First: d.queueFirst(block, s), Count: uint16(d.balance())}
			}
		} else {
			div.Queues[0] = rules.QueueSet{First: d.queueFirst(block, 0), Count: uint16(d.balance())}
		}
		rs.Diversions = append(rs.Diversions, div)
	}
	return rs
}

// filterFor converts the divert section of a hook (checked at load).
func filterFor(cfg *config.File, h engine.Hook) rules.Filter {
	f, ok := cfg.Divert[h.String()]
	if !ok {
		return rules.Filter{}
	}
	protos, _ := f.ProtoNumbers()
	src, dst, _ := f.Prefixes()
	return rules.Filter{Protos: protos, DPorts: f.DPorts, SPorts: f.SPorts, InIfaces: f.In, OutIfaces: f.Out, Src: src, Dst: dst}
}

// segRunner serves one segment's queues: one socket and one engine worker
// per balanced queue.
type segRunner struct {
	d      *Daemon
	key    string
	seg    atomic.Pointer[Segment]
	socks  []*queue.Socket
	cancel context.CancelFunc
	wg     sync.WaitGroup
	beats  []*heartbeat // one per reader: drain watches them stand still
	stats  *segStats
}

// segStats count what the segment decided.
type segStats struct {
	verdicts  [5]atomic.Uint64 // by engine.Verdict
	ctSubmit  atomic.Uint64
	ctDrop    atomic.Uint64
	rewritten atomic.Uint64 // verdicts that carried rewritten bytes
}

func (d *Daemon) startRunner(seg Segment) (*segRunner, error) {
	block := d.allocBlock(seg.Key())
	ctx, cancel := context.WithCancel(context.Background())
	r := &segRunner{d: d, key: seg.Key(), cancel: cancel, stats: d.statsFor(seg.Key())}
	r.seg.Store(&seg)
	states := 1
	if d.byState(seg) {
		states = netfilter.NumCTStates
	}
	for i := 0; i < d.balance(); i++ {
		maxLen := d.cfg.Queue.MaxLen
		if maxLen == 0 {
			maxLen = DefaultQueueMaxLen
		}
		qcfg := queue.Config{
			MaxLen:   maxLen,
			FailOpen: d.cfg.QueueFailOpen(),
			GSO:      boolOr(d.cfg.Queue.GSO, true),
			UIDGID:   seg.Hook == engine.Output || seg.Hook == engine.Postrouting,
			// NFQA_CT where the kernel grants it (state and mark on each
			// packet, no lookups); refused here, then queues and ctnetlink.
			ConnTrack: d.cfg.ConntrackEnabled(),
			Burst:     d.cfg.Queue.Burst,
			Logger:    d.log.With("segment", seg.Key()),
		}
		// stateOf maps queue number - first to the ct state its rule
		// matched (queues of one socket are balance apart).
		first := d.queueFirst(block, 0) + uint16(i)
		stateOf := make([]engine.CTState, (states-1)*d.balance()+1)
		for s := 0; s < states; s++ {
			q := d.queueFirst(block, s) + uint16(i)
			qcfg.Queues = append(qcfg.Queues, q)
			if states > 1 {
				stateOf[q-first] = netfilter.CTStates()[s]
			}
		}
		sock, err := queue.Open(qcfg)
		if err != nil {
			r.stop()
			return nil, fmt.Errorf("segment %s: queues %v: %w", seg.Key(), qcfg.Queues, err)
		}
		r.socks = append(r.socks, sock)
		if sock.Info().ConnTrackRefused && d.ctRefusedLogged.CompareAndSwap(false, true) {
			d.log.Info("this kernel does not hand conntrack state to NFQUEUE (NFQA_CFG_F_CONNTRACK refused); " +
				"expected on kernels without it and harmless: luafw reads the state from its queue rules and conntrack marks through ctnetlink")
		}
		// Sockets are opened here, in the caller's network namespace.
		var lookup *ct.Conn
		if d.ct != nil {
			if lookup, err = ct.Open(); err != nil {
				r.stop()
				return nil, fmt.Errorf("segment %s: conntrack: %w", seg.Key(), err)
			}
		}
		q := &queueReader{r: r, beat: d.svc.readers.add(r.key, sock.Info().Queues), first: first, stateOf: stateOf,
			skip: d.rules.SkipMark, reject: d.rules.RejectMark, cgroups: d.openCgroupSource(seg.Hook)}
		r.beats = append(r.beats, q.beat)
		r.wg.Add(1)
		go r.serve(ctx, sock, lookup, q)
	}
	d.runners[seg.Key()] = r
	d.log.Info("serving segment", "segment", seg.String(), "queues", len(r.socks)*states)
	return r, nil
}

// serve runs one socket's packets through a worker of its own. lookup, when
// not nil, is the worker's conntrack socket for pkt.ct.mark (its own: the
// shared one is busy with the updater's retries).
func (r *segRunner) serve(ctx context.Context, sock *queue.Socket, lookup *ct.Conn, q *queueReader) {
	defer r.wg.Done()
	defer r.d.svc.readers.remove(q.beat)
	q.w = r.d.eng.NewWorker()
	defer q.w.Close()
	// Reloads and rebuilds run plugins' top levels on other goroutines
	// while the reader goes on deciding packets (engine build.go).
	q.w.SetBackgroundBuilds(true)
	q.w.HoldTraces() // a traced packet's record shows the kernel verdict
	if lookup != nil {
		defer lookup.Close()
		q.w.SetCTSource(&ctSource{ct: lookup, marks: r.d.marks, log: r.d.log})
	}
	if q.cgroups != nil {
		defer q.cgroups.r.Close()
		q.w.SetCgroupSource(q.cgroups)
	}
	q.obs = r.d.out.obs.Load() // nil when events and capture are off
	err := sock.ServeThen(ctx, q.burst, q.sent)
	if err != nil && ctx.Err() == nil {
		// The queue now has no reader and its traffic bypasses luafw:
		// stop the daemon rather than filter silently less.
		r.d.fail(fmt.Errorf("segment %s: queue reader stopped: %w", r.key, err))
	}
}

// verdict turns the engine's decision into the kernel's. The packet's own
// reserved bits are kept out of what scripts see and set.
func verdict(d *engine.Decision, kernelMark uint32, last bool, skip, reject uint32, tags *tagMarks) queue.Verdict {
	reserved := skip | reject
	var tagMask, tagBits uint32
	if tags != nil {
		tagMask, tagBits = tags.mask, tags.encode(d.Tags)
		reserved |= tagMask
	}
	v := queue.Verdict{Verdict: queue.VerdictAccept}
	mark := kernelMark
	if d.MarkSet {
		mark = kernelMark&reserved | d.Mark&^reserved
		v.SetMark = true
	}
	if mark&tagMask != tagBits { // tags.go: the tags that cross to later diversions
		mark = mark&^tagMask | tagBits
		v.SetMark = true
	}
	switch d.Verdict {
	case engine.Drop:
		return queue.Verdict{Verdict: queue.VerdictDrop}
	case engine.Reject:
		v.Verdict, v.SetMark = queue.VerdictRepeat, true
		mark |= skip | reject
	case engine.Repeat:
		v.Verdict, v.SetMark = queue.VerdictRepeat, true
		mark |= skip
	case engine.Stop:
		// Skip luafw's later segments of this hook; the tail chain clears
		// the bit before the next hook.
		if !last {
			v.SetMark = true
			mark |= skip
		}
	}
	v.Mark = mark
	v.Payload = d.Data // the rewritten packet (NFQA_PAYLOAD), nil when none
	return v
}

// ctUpdateOf is the conntrack update a decision asks for, keyed by the
// packet's tuple; it also remembers the new mark so later packets read it
// before the kernel has it. ok is false for a packet with no tuple.
func (r *segRunner) ctUpdateOf(data []byte, u engine.CTUpdate) (ctItem, bool) {
	var p packet.Parsed
	p.Decode(data)
	t, ok := tupleOf(&p, data)
	if !ok {
		return ctItem{}, false
	}
	if u.SetMark {
		r.d.marks.update(t, u.Mark, u.MarkMask)
	}
	return ctItem{t, ct.Update{Mark: u.Mark, MarkMask: u.MarkMask, SetMark: u.SetMark, Timeout: u.Timeout,
		SetTimeout: u.SetTimeout, Labels: u.Labels, SetLabels: u.SetLabels}}, true
}

// ctItem is one conntrack update waiting for its burst's verdicts.
type ctItem struct {
	t  ct.Tuple
	up ct.Update
}

// submitCT hands a burst's conntrack updates to the updater. It runs once
// the burst's verdicts are written (queue.Socket.ServeThen): a new
// connection's entry exists only once its first packet has passed, so an
// update sent before that would find nothing and wait for a retry.
func (r *segRunner) submitCT(items []ctItem) {
	for _, it := range items {
		if r.d.updater.Submit(it.t, it.up) {
			r.stats.ctSubmit.Add(1)
		} else {
			r.stats.ctDrop.Add(1)
		}
	}
}

// tupleOf is the conntrack tuple of a packet (either direction finds the
// entry).
func tupleOf(p *packet.Parsed, data []byte) (ct.Tuple, bool) {
	if p.Family == 0 {
		return ct.Tuple{}, false
	}
	t := ct.Tuple{Proto: p.Proto, Src: p.Src, Dst: p.Dst, SPort: p.SrcPort, DPort: p.DstPort}
	if p.Proto == packet.ProtoICMP || p.Proto == packet.ProtoICMPv6 {
		t.SPort, t.DPort = 0, uint16(p.ICMPType)<<8|uint16(p.ICMPCode)
		if p.L4Off >= 0 && len(data) >= p.L4Off+6 {
			t.SPort = uint16(data[p.L4Off+4])<<8 | uint16(data[p.L4Off+5])
		}
	}
	return t, true
}

// stop ends serving at once.
func (r *segRunner) stop() {
	r.cancel()
	r.wg.Wait()
	for _, s := range r.socks {
		s.Close()
	}
}

// drainAndStop keeps serving until the queues have been quiet for a moment
// (the rules diverting to them are gone), so no queued packet is left
// without a verdict, then stops.
func (r *segRunner) drainAndStop() {
	deadline := time.Now().Add(drainMax)
	for last := r.progress(); time.Now().Before(deadline); {
		time.Sleep(drainQuiet)
		now := r.progress()
		if now == last {
			break
		}
		last = now
	}
	r.stop()
}

// progress sums the readers' heartbeats: it stands still while no burst
// starts or ends.
func (r *segRunner) progress() uint64 {
	var n uint64
	for _, b := range r.beats {
		n += b.seq.Load()
	}
	return n
}

// ifName names interface idx ("ifN" when it is gone).
func ifName(idx uint32) string {
	if ifc, err := net.InterfaceByIndex(int(idx)); err == nil {
		return ifc.Name
	}
	return fmt.Sprintf("if%d", idx)
}

// ctSource answers pkt.ct.mark: first from marks luafw set itself (which the
// kernel may not have applied yet), else through ctnetlink.
type ctSource struct {
	ct    *ct.Conn
	marks *markCache
	log   *slog.Logger
}

func (s *ctSource) CTMark(c *engine.Ctx) (uint32, bool) {
	p := c.Parsed()
	t, ok := tupleOf(p, c.Packet().Data)
	if !ok {
		return 0, false
	}
	if m, ok := s.marks.get(t); ok {
		return m, true
	}
	e, found, err := s.ct.Get(t)
	if err != nil || !found {
		s.log.Debug("conntrack lookup found nothing", "tuple", fmt.Sprint(t), "found", found, "err", err)
		return 0, false
	}
	return e.Mark, true
}

// markCache remembers conntrack marks luafw set in the last few seconds,
// keyed by the flow (both directions).
type markCache struct {
	mu sync.Mutex
	m  map[flowKey]markEntry
}

type flowKey struct {
	proto uint8
	a, b  netip.AddrPort
}

type markEntry struct {
	mark uint32
	at   time.Time
}

const markCacheTTL = 5 * time.Second

func newMarkCache() *markCache { return &markCache{m: map[flowKey]markEntry{}} }

func keyOf(t ct.Tuple) flowKey {
	a, b := netip.AddrPortFrom(t.Src, t.SPort), netip.AddrPortFrom(t.Dst, t.DPort)
	if b.Addr().Less(a.Addr()) || (a.Addr() == b.Addr() && b.Port() < a.Port()) {
		a, b = b, a
	}
	return flowKey{t.Proto, a, b}
}

func (c *markCache) update(t ct.Tuple, mark, mask uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if len(c.m) > 65536 {
		for k, e := range c.m {
			if now.Sub(e.at) > markCacheTTL {
				delete(c.m, k)
			}
		}
	}
	k := keyOf(t)
	old, known := c.m[k]
	if !known && mask != 0xffffffff {
		return // the other bits are the kernel's: not known here
	}
	c.m[k] = markEntry{mark: old.mark&^mask | mark&mask, at: now}
}

func (c *markCache) get(t ct.Tuple) (uint32, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[keyOf(t)]
	if !ok || time.Since(e.at) > markCacheTTL {
		return 0, false
	}
	return e.mark, true
}

package daemon

import (
	"github.com/luafw/luafw/daemon/observe"
	"github.com/luafw/luafw/internal/engine"
	"github.com/luafw/luafw/nfq/ct"
	"github.com/luafw/luafw/nfq/queue"
)

// queueReader turns one socket's bursts into engine runs and verdicts. It
// belongs to the socket's serve goroutine. What it needs per packet lives
// here and is reused, so that a packet costs no allocation and touches no
// memory another queue's reader writes: the segment's counters, shared by
// the segment's readers, are added to once per burst.
type queueReader struct {
	r       *segRunner
	w       *engine.Worker
	beat    *heartbeat
	obs     *observe.Observer // nil when events and capture are off
	names   ifNames
	first   uint16           // the socket's first queue number
	stateOf []engine.CTState // ct state by queue number - first
	skip    uint32           // luafw's reserved mark bits
	reject  uint32
	cgroups *cgroupSource // output and postrouting: pkt.cgroup (cgroup.go)
	// pkt is the packet handed to the engine, reused from packet to packet
	// (the engine keeps it only until the next run).
	pkt    engine.Packet
	tagBuf []string // p.Tags decoded from the mark (tags.go), reused
	// ct holds the burst's conntrack updates until its verdicts are
	// written (sent); a burst that panicked has no sent, and the next
	// burst starts them afresh.
	ct []ctItem
	// Counts of the current burst, added to the segment's at its end.
	verdicts  [len(segStats{}.verdicts)]uint64
	rewritten uint64
}

// burst is the socket's handler (queue.Socket.ServeThen; sent runs after).
func (q *queueReader) burst(msgs []queue.Msg, out []queue.Verdict) {
	q.beat.enter()
	defer q.endBurst()
	clear(q.ct)
	q.ct = q.ct[:0]
	r := q.r
	seg := r.seg.Load()
	tags := r.d.tags.Load() // tags.go; nil when none cross
	reserved := q.skip | q.reject
	if tags != nil {
		reserved |= tags.mask
	}
	p := &q.pkt
	for i := range msgs {
		m := &msgs[i]
		*p = engine.Packet{Hook: seg.Hook, Data: m.Payload, Mark: m.Mark &^ reserved,
			InDev: q.names.name(m.InDev), OutDev: q.names.name(m.OutDev),
			UID: m.UID, GID: m.GID, HasUID: m.HasUID}
		if k := int(m.Queue - q.first); k < len(q.stateOf) {
			p.CTState = q.stateOf[k]
		}
		if tags != nil {
			p.Tags = tags.decode(m.Mark, q.tagBuf[:0])
			q.tagBuf = p.Tags[:0]
		}
		if m.HasCT {
			p.CTState = ct.StateOf(m.CTInfo)
			p.CTMark, p.CTMarkKnown = ct.MarkOf(m.CT)
			p.CTPackets, _ = ct.PacketsOf(m.CT)
		}
		dec := q.w.RunRange(p, seg.Lo, seg.Hi)
		if r.d.inj != nil {
			dec.Mark &^= r.d.inj.bit // only injected packets carry it (inject.go)
		}
		out[i] = verdict(&dec, m.Mark, seg.Last, q.skip, q.reject, tags)
		if q.w.TracePending() {
			q.w.TraceKernel(engine.TraceKernel{Segment: r.key, Verdict: kernelVerdictName(out[i].Verdict), Mark: out[i].Mark, SetMark: out[i].SetMark})
		}
		if int(dec.Verdict) < len(q.verdicts) {
			q.verdicts[dec.Verdict]++
		}
		if q.obs != nil {
			q.obs.Record(r.key, p, &dec)
		}
		if dec.Data != nil {
			q.rewritten++
		}
		if len(dec.Injected) > 0 && r.d.inj != nil {
			r.d.inj.submit(dec.Injected)
		}
		if dec.CT.Any() && r.d.updater != nil {
			if it, ok := r.ctUpdateOf(m.Payload, dec.CT); ok {
				q.ct = append(q.ct, it)
			}
		}
	}
}

// sent runs after the burst's verdicts are written (queue.Socket.ServeThen):
// the connections of accepted first packets now have their entries, so
// their updates apply at the updater's first try.
func (q *queueReader) sent() {
	if len(q.ct) > 0 {
		q.r.submitCT(q.ct)
	}
}

// endBurst adds the burst's counts to the segment's and leaves the burst
// (deferred, so a handler panic leaves no reader looking stuck).
func (q *queueReader) endBurst() {
	st := q.r.stats
	for v, n := range q.verdicts {
		if n > 0 {
			st.verdicts[v].Add(n)
		}
	}
	q.verdicts = [len(q.verdicts)]uint64{}
	if q.rewritten > 0 {
		st.rewritten.Add(q.rewritten)
		q.rewritten = 0
	}
	q.pkt = engine.Packet{} // drop the reference to the socket's buffer
	q.beat.leave()
}

// ifNames caches interface names by index (one per reader). Indexes below
// len(small), the common case, cost an array read; others a map lookup.
type ifNames struct {
	small [64]string
	more  map[uint32]string
}

func (n *ifNames) name(idx uint32) string {
	if idx == 0 {
		return ""
	}
	if idx < uint32(len(n.small)) {
		if s := n.small[idx]; s != "" {
			return s
		}
	} else if s, ok := n.more[idx]; ok {
		return s
	}
	s := ifName(idx)
	if idx < uint32(len(n.small)) {
		n.small[idx] = s
	} else {
		if n.more == nil {
			n.more = map[uint32]string{}
		}
		n.more[idx] = s
	}
	return s
}

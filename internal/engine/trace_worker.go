package engine

import (
	"fmt"
	"slices"
	"time"

	"github.com/luafw/luafw/internal/sandbox"
	"github.com/luafw/luafw/internal/watchdog"

	lua "github.com/luafw/luafw/lua"
)

// workerTrace is a worker's side of the attached tap: the record of the
// packet being traced (reused from packet to packet) and the state that
// runs the tap's Lua filter.
type workerTrace struct {
	tap     *Tap         // the tap fs belongs to
	fs      *pluginState // the filter's state; nil without an expression
	shadow  *Worker      // owns the Ctx the filter reads: a copy of the packet's
	rec     TraceRecord
	pending bool // rec waits for TraceKernel

	// the Ctx before the running callback
	t0         int64
	mark       uint32
	markSet    bool
	ct         CTUpdate
	tagsBefore []string
}

// HoldTraces makes a traced packet's record wait for TraceKernel, so that
// it shows what the kernel was told. A program driving NFQUEUE sets it.
func (w *Worker) HoldTraces() { w.traceHold = true }

// TracePending reports whether the last packet's record waits for
// TraceKernel. It is a plain field read: call it for every packet.
func (w *Worker) TracePending() bool { return w.tr != nil && w.tr.pending }

// TraceKernel completes the last packet's record with what the kernel was
// told and queues it.
func (w *Worker) TraceKernel(k TraceKernel) {
	if !w.TracePending() {
		return
	}
	w.tr.rec.Kernel = k
	w.tr.pending = false
	w.tr.publish()
}

// traceBegin decides whether the packet is traced and, if so, starts its
// record. c has been reset to the packet.
func (w *Worker) traceBegin(t *Tap, c *Ctx) *workerTrace {
	wt := w.tr
	if wt == nil {
		wt = &workerTrace{}
		w.tr = wt
	}
	if wt.pending { // the driver did not report the last one
		wt.pending = false
		wt.publish()
	}
	if wt.tap != t {
		wt.attach(w, t)
	}
	p := c.pkt
	pp := c.Parsed()
	if !t.f.matchGo(p, pp) {
		return nil
	}
	if wt.fs != nil && !w.traceFilter(wt, p) {
		return nil
	}
	r := &wt.rec
	calls := r.Calls[:0]
	*r = TraceRecord{Time: time.Now(), Hook: p.Hook, Src: pp.Src, Dst: pp.Dst, Proto: pp.Proto,
		SPort: pp.SrcPort, DPort: pp.DstPort, Len: len(p.Data), InDev: p.InDev, OutDev: p.OutDev,
		Mark: p.Mark, CTState: p.CTState, Tags: p.Tags, Calls: calls}
	return wt
}

// attach makes the worker's filter state for t, replacing the one of an
// earlier tap.
func (wt *workerTrace) attach(w *Worker, t *Tap) {
	wt.close()
	wt.tap = t
	if t.filter == nil {
		return
	}
	sh := &Worker{eng: w.eng, slot: w.slot}
	sh.ctx.w = sh
	fs, err := w.eng.newPluginState(t.filter, sh)
	if err != nil {
		// It ran at attach; count every packet as a filter failure.
		w.eng.log.Error("trace filter failed to start in worker", "err", err)
		fs = nil
	}
	wt.shadow, wt.fs = sh, fs
}

func (wt *workerTrace) close() {
	if wt.fs != nil {
		wt.fs.L.Close()
	}
	wt.fs, wt.shadow, wt.tap = nil, nil, nil
}

// traceFilter runs the Lua filter on a copy of the packet's context, under
// the worker's budget watchdog.
func (w *Worker) traceFilter(wt *workerTrace, p *Packet) bool {
	t := wt.tap
	sh := wt.shadow
	sh.ct = w.ct
	sh.ctx.reset(p)
	L := wt.fs.L
	top := L.GetTop()
	w.slot.Start(t.f.Budget)
	L.Push(wt.fs.fns[0])
	L.Push(wt.fs.pkt)
	err := L.PCall(1, 1, nil)
	cut := w.slot.End() != watchdog.NotCut
	var ret lua.LValue = lua.LFalse
	if err == nil {
		ret = L.Get(-1)
	}
	L.SetTop(top)
	if err != nil || cut {
		msg := fmt.Sprintf("ran over its budget of %s", t.f.Budget)
		if err != nil && !cut {
			msg = sandbox.Cut(err.Error(), sandbox.MaxErrorText)
		}
		t.lastFilterError.Store(&msg)
		t.filterErrors.Add(1)
		return false
	}
	return lua.LVAsBool(ret)
}

// before notes the context ahead of a callback.
func (wt *workerTrace) before(w *Worker, c *Ctx) {
	wt.mark, wt.markSet, wt.ct = c.mark, c.markSet, c.ctUpd
	wt.tagsBefore = append(wt.tagsBefore[:0], c.tags...)
	wt.t0 = w.eng.nanos()
}

// after records a callback's run and what it changed.
func (wt *workerTrace) after(w *Worker, en *entry, c *Ctx, v Verdict, failed bool) {
	tc := TraceCall{Plugin: en.owner, Name: en.name, Priority: en.priority, Verdict: v, Failed: failed,
		Took: time.Duration(w.eng.nanos() - wt.t0)}
	if c.mark != wt.mark || c.markSet != wt.markSet {
		tc.MarkSet, tc.Mark = true, c.mark
	}
	for _, tag := range c.tags {
		if !slices.Contains(wt.tagsBefore, tag) {
			tc.Tagged = append(tc.Tagged, tag)
		}
	}
	for _, tag := range wt.tagsBefore {
		if !slices.Contains(c.tags, tag) {
			tc.Untagged = append(tc.Untagged, tag)
		}
	}
	if u := c.ctUpd; u != wt.ct {
		if u.SetMark && (u.Mark != wt.ct.Mark || u.MarkMask != wt.ct.MarkMask || !wt.ct.SetMark) {
			tc.CT.SetMark, tc.CT.Mark, tc.CT.MarkMask = true, u.Mark, u.MarkMask
		}
		if u.SetTimeout && (u.Timeout != wt.ct.Timeout || !wt.ct.SetTimeout) {
			tc.CT.SetTimeout, tc.CT.Timeout = true, u.Timeout
		}
		for i := range u.Labels {
			tc.CT.Labels[i] = u.Labels[i] &^ wt.ct.Labels[i]
		}
		tc.CT.SetLabels = tc.CT.Labels != [2]uint64{}
	}
	wt.rec.Calls = append(wt.rec.Calls, tc)
}

// traceEnd finishes the record with the decision and, if the packet
// matches the filter's outcome fields, queues it (or holds it for
// TraceKernel).
func (w *Worker) traceEnd(wt *workerTrace, d *Decision) {
	wt.rec.Decision = *d
	if !wt.tap.f.matchOutcome(&wt.rec) {
		return
	}
	wt.tap.matched.Add(1)
	if w.traceHold {
		wt.pending = true
		return
	}
	wt.publish()
}

// publish copies the record onto the tap's channel, or counts it lost.
func (wt *workerTrace) publish() {
	t := wt.tap
	if t == nil {
		return
	}
	if len(t.c) == cap(t.c) { // do not copy what cannot be queued
		t.lost.Add(1)
		return
	}
	r := new(TraceRecord)
	*r = wt.rec
	r.Calls = slices.Clone(wt.rec.Calls)
	r.Tags = slices.Clone(wt.rec.Tags)
	r.Decision.Tags = slices.Clone(wt.rec.Decision.Tags)
	r.Decision.Injected = slices.Clone(wt.rec.Decision.Injected)
	select {
	case t.c <- r:
	default:
		t.lost.Add(1)
	}
}

package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/luafw/luafw/daemon/control"
	"github.com/luafw/luafw/internal/engine"
	"github.com/luafw/luafw/nfq/queue"
)

// Trace bounds: the defaults of `luafw trace` and what the daemon accepts.
const (
	DefaultTraceCount = 100
	DefaultTraceFor   = 60 * time.Second
	maxTraceCount     = 1_000_000
	maxTraceFor       = 24 * time.Hour
	traceQueue        = 256                    // records waiting for the connection
	traceNoteEvery    = 500 * time.Millisecond // how often losses are reported
)

// TraceArgs are the arguments of the trace command: the filter (every field
// set must match) and the bounds.
type TraceArgs struct {
	Expr     string   `json:"expr,omitempty"`  // Lua expression over pkt
	Proto    string   `json:"proto,omitempty"` // tcp, udp, icmp, icmpv6 or a number
	Src      string   `json:"src,omitempty"`   // address or prefix
	Dst      string   `json:"dst,omitempty"`
	Port     uint16   `json:"port,omitempty"` // source or destination
	Hooks    []string `json:"hooks,omitempty"`
	Plugin   string   `json:"plugin,omitempty"`
	Verdicts []string `json:"verdicts,omitempty"`
	Count    int      `json:"count,omitempty"`       // packets; default DefaultTraceCount
	Seconds  float64  `json:"for_seconds,omitempty"` // default DefaultTraceFor
}

// TraceItem is one streamed line of a trace: a packet, or a note of what
// was lost since the previous note.
type TraceItem struct {
	Packet       *TracePacket `json:"packet,omitempty"`
	Lost         uint64       `json:"lost,omitempty"`          // records dropped: the reader was too slow
	FilterErrors uint64       `json:"filter_errors,omitempty"` // packets whose Lua filter failed or timed out
	FilterError  string       `json:"filter_error,omitempty"`  // the latest failure's error
}

// TracePacket is one packet's walk through one segment: `luafw trace --json`
// prints one per line.
type TracePacket struct {
	Time      time.Time   `json:"time"`
	Hook      string      `json:"hook"`
	Segment   string      `json:"segment,omitempty"`
	Src       string      `json:"src,omitempty"`
	Dst       string      `json:"dst,omitempty"`
	Proto     string      `json:"proto"`
	SPort     uint16      `json:"sport"`
	DPort     uint16      `json:"dport"`
	Len       int         `json:"len"`
	In        string      `json:"in,omitempty"`
	Out       string      `json:"out,omitempty"`
	Mark      uint32      `json:"mark"` // as the packet came
	CTState   string      `json:"ct_state,omitempty"`
	Tags      []string    `json:"tags,omitempty"` // carried in
	Callbacks []TraceCall `json:"callbacks"`
	Verdict   string      `json:"verdict"`
	By        string      `json:"by,omitempty"` // plugin whose callback decided
	ByName    string      `json:"by_callback,omitempty"`
	MarkOut   *uint32     `json:"mark_out,omitempty"` // when a callback changed the mark
	TagsOut   []string    `json:"tags_out,omitempty"`
	CT        *TraceCT    `json:"ct,omitempty"` // conntrack update submitted
	Errors    int         `json:"errors,omitempty"`
	Rewritten bool        `json:"rewritten,omitempty"` // a callback rewrote the packet; the kernel got the new bytes
	Injected  int         `json:"injected,omitempty"`  // packets callbacks asked to send (fw.send, replies)
	Kernel    TraceKernel `json:"kernel"`
}

// TraceCall is one callback's run on a traced packet.
type TraceCall struct {
	Plugin   string   `json:"plugin"`
	Name     string   `json:"callback"`
	Priority int      `json:"priority"`
	Verdict  string   `json:"verdict"`
	Failed   bool     `json:"failed,omitempty"` // verdict is the plugin's on_error
	TookNS   int64    `json:"took_ns"`
	Mark     *uint32  `json:"mark,omitempty"` // the mark it set
	Tagged   []string `json:"tagged,omitempty"`
	Untagged []string `json:"untagged,omitempty"`
	CT       *TraceCT `json:"ct,omitempty"`
}

// TraceCT is a conntrack update.
type TraceCT struct {
	Mark     *uint32 `json:"mark,omitempty"`
	MarkMask uint32  `json:"mark_mask,omitempty"`
	Timeout  *uint32 `json:"timeout,omitempty"`
	Labels   []int   `json:"labels,omitempty"` // bits set
}

// TraceKernel is what the kernel was told.
type TraceKernel struct {
	Verdict string  `json:"verdict"`
	Mark    *uint32 `json:"mark,omitempty"` // when the verdict set the mark
}

// TraceSummary is the trace command's final answer.
type TraceSummary struct {
	Ended        string `json:"ended"` // "count", "time" or "detached"
	Shown        uint64 `json:"shown"`
	Matched      uint64 `json:"matched"`
	Lost         uint64 `json:"lost"`
	FilterErrors uint64 `json:"filter_errors"`
	FilterError  string `json:"filter_error,omitempty"` // the latest failure's error
}

// filter checks the arguments and makes the engine's filter.
func (a *TraceArgs) filter() (engine.TraceFilter, error) {
	f := engine.TraceFilter{Expr: a.Expr, Port: a.Port, Plugin: a.Plugin}
	var err error
	if a.Proto != "" {
		if f.Proto, err = engine.ParseProto(a.Proto); err != nil {
			return f, err
		}
	}
	if f.Src, err = parsePrefix("src", a.Src); err != nil {
		return f, err
	}
	if f.Dst, err = parsePrefix("dst", a.Dst); err != nil {
		return f, err
	}
	for _, h := range a.Hooks {
		hk, err := engine.ParseHook(h)
		if err != nil {
			return f, err
		}
		f.Hooks = append(f.Hooks, hk)
	}
	for _, v := range a.Verdicts {
		vd, err := engine.ParseVerdict(v)
		if err != nil {
			return f, err
		}
		f.Verdicts = append(f.Verdicts, vd)
	}
	return f, nil
}

// parsePrefix reads an address or a prefix; "" is none.
func parsePrefix(what, s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, nil
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, fmt.Errorf("--%s: %w", what, err)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("--%s: %w", what, err)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// bounds are the trace's packet count and duration, defaulted and capped.
func (a *TraceArgs) bounds() (int, time.Duration) {
	n, dur := a.Count, time.Duration(a.Seconds*float64(time.Second))
	if n <= 0 {
		n = DefaultTraceCount
	}
	if dur <= 0 {
		dur = DefaultTraceFor
	}
	return min(n, maxTraceCount), min(dur, maxTraceFor)
}

// trace serves `luafw trace`: it attaches a tap and streams the matching
// packets until the count or the time is reached or the client goes.
func (d *Daemon) trace(ctx context.Context, raw json.RawMessage, send func(any) error) (any, error) {
	var a TraceArgs
	if err := control.DecodeArgs(raw, &a); err != nil {
		return nil, err
	}
	f, err := a.filter()
	if err != nil {
		return nil, err
	}
	if err := d.checkTracePlugin(a.Plugin); err != nil {
		return nil, err
	}
	n, dur := a.bounds()
	tap, err := d.eng.Trace(f, traceQueue)
	if errors.Is(err, engine.ErrTraceBusy) {
		return nil, errors.New("another `luafw trace` is attached; one runs at a time (wait for it to end or stop it)")
	}
	if err != nil {
		return nil, err
	}
	defer tap.Close()
	d.log.Info("trace attached", "filter", fmt.Sprintf("%+v", a))
	sum := TraceSummary{Ended: "detached"}
	var noted TraceItem // what the notes have reported so far
	note := func() error {
		lost, fe := tap.Lost(), tap.FilterErrors()
		if lost == noted.Lost && fe == noted.FilterErrors {
			return nil
		}
		item := TraceItem{Lost: lost - noted.Lost, FilterErrors: fe - noted.FilterErrors}
		if item.FilterErrors > 0 {
			item.FilterError = tap.LastFilterError()
		}
		noted.Lost, noted.FilterErrors = lost, fe
		return send(item)
	}
	timer := time.NewTimer(dur)
	defer timer.Stop()
	tick := time.NewTicker(traceNoteEvery)
	defer tick.Stop()
	err = func() error {
		for sum.Shown < uint64(n) {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-timer.C:
				sum.Ended = "time"
				return nil
			case <-tick.C:
				if err := note(); err != nil {
					return err
				}
			case r := <-tap.C():
				if err := note(); err != nil {
					return err
				}
				if err := send(TraceItem{Packet: tracePacket(r)}); err != nil {
					return err
				}
				sum.Shown++
			}
		}
		sum.Ended = "count"
		return nil
	}()
	tap.Close()
	sum.Matched, sum.Lost, sum.FilterErrors, sum.FilterError = tap.Matched(), tap.Lost(), tap.FilterErrors(), tap.LastFilterError()
	d.log.Info("trace detached", "ended", sum.Ended, "shown", sum.Shown, "lost", sum.Lost, "filter_errors", sum.FilterErrors, "err", err)
	if err == nil && sum.Ended != "detached" {
		note()
	}
	return sum, nil
}

// checkTracePlugin refuses a trace of a plugin that is not loaded, which
// would otherwise wait its whole time for nothing. A later reload may
// still load it; the check is of the running set.
func (d *Daemon) checkTracePlugin(name string) error {
	if name == "" {
		return nil
	}
	var names []string
	for _, p := range d.eng.Plugins() {
		if p.Name == name {
			return nil
		}
		names = append(names, p.Name)
	}
	return fmt.Errorf("no plugin %q is loaded (plugins: %s)", name, strings.Join(names, ", "))
}

// tracePacket converts the engine's record.
func tracePacket(r *engine.TraceRecord) *TracePacket {
	dec := &r.Decision
	p := &TracePacket{Time: r.Time, Hook: r.Hook.String(), Segment: r.Kernel.Segment, Proto: engine.ProtoName(r.Proto),
		SPort: r.SPort, DPort: r.DPort, Len: r.Len, In: r.InDev, Out: r.OutDev, Mark: r.Mark,
		CTState: r.CTState.String(), Tags: r.Tags, Callbacks: make([]TraceCall, 0, len(r.Calls)),
		Verdict: dec.Verdict.String(), By: dec.By, ByName: dec.ByName, TagsOut: dec.Tags, CT: traceCT(dec.CT),
		Errors: dec.Errors, Rewritten: dec.Data != nil, Injected: len(dec.Injected), Kernel: TraceKernel{Verdict: r.Kernel.Verdict}}
	if r.Src.IsValid() {
		p.Src, p.Dst = r.Src.String(), r.Dst.String()
	}
	if dec.MarkSet {
		p.MarkOut = &dec.Mark
	}
	if r.Kernel.SetMark {
		p.Kernel.Mark = &r.Kernel.Mark
	}
	for _, c := range r.Calls {
		tc := TraceCall{Plugin: c.Plugin, Name: c.Name, Priority: c.Priority, Verdict: c.Verdict.String(), Failed: c.Failed,
			TookNS: int64(c.Took), Tagged: c.Tagged, Untagged: c.Untagged, CT: traceCT(c.CT)}
		if c.MarkSet {
			tc.Mark = &c.Mark
		}
		p.Callbacks = append(p.Callbacks, tc)
	}
	return p
}

func traceCT(u engine.CTUpdate) *TraceCT {
	if !u.Any() {
		return nil
	}
	ct := &TraceCT{}
	if u.SetMark {
		ct.Mark, ct.MarkMask = &u.Mark, u.MarkMask
	}
	if u.SetTimeout {
		ct.Timeout = &u.Timeout
	}
	for bit := range 128 {
		if u.Labels[bit/64]&(1<<(bit%64)) != 0 {
			ct.Labels = append(ct.Labels, bit)
		}
	}
	return ct
}

// kernelVerdictName names an NFQUEUE verdict.
func kernelVerdictName(v uint32) string {
	switch v {
	case queue.VerdictAccept:
		return "accept"
	case queue.VerdictDrop:
		return "drop"
	case queue.VerdictRepeat:
		return "repeat"
	}
	return fmt.Sprintf("verdict(%d)", v)
}

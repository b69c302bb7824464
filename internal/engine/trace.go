package engine

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/luafw/luafw/lua/parse"

	"github.com/luafw/luafw/host/netset"
	"github.com/luafw/luafw/host/packet"
)

// Packet tracing: what `luafw trace` shows. One Tap at a time may be
// attached to an engine. While none is, a worker pays one atomic load per
// packet. While one is, a worker checks the tap's Go filters on each
// packet, then its Lua filter, and only for packets that pass records each
// callback's verdict, time and changes into a buffer of its own; the
// finished record is copied onto the tap's bounded channel, or counted as
// lost when the channel is full, so a slow reader never slows packets.

// DefaultTraceBudget bounds one run of a trace's Lua filter.
const DefaultTraceBudget = time.Millisecond

// ErrTraceBusy is returned by Trace while another tap is attached.
var ErrTraceBusy = errors.New("a trace is already attached (one at a time)")

// TraceFilter selects the packets a trace shows; zero fields match every
// packet, and a packet must match every field set.
type TraceFilter struct {
	Proto    uint8        // IP protocol number (ParseProto); 0 = any
	Src, Dst netip.Prefix // source, destination address within
	Port     uint16       // source or destination port
	Hooks    []Hook       // any of
	Plugin   string       // a callback of this plugin ran on the packet
	Verdicts []Verdict    // the chain's final verdict is one of
	// Expr is a Lua expression over pkt, run in a sandboxed state like a
	// plugin's, against a copy of the packet (it cannot change it), before
	// the callbacks. A true value matches; false, nil, an error or running
	// past Budget do not (errors are counted).
	Expr   string
	Budget time.Duration // for Expr; default DefaultTraceBudget
}

// TraceRecord is one packet's walk down one diversion of a chain.
type TraceRecord struct {
	Time          time.Time
	Hook          Hook
	Src, Dst      netip.Addr // invalid when the packet did not decode
	Proto         uint8
	SPort, DPort  uint16
	Len           int
	InDev, OutDev string
	Mark          uint32  // the packet mark as the kernel had it
	CTState       CTState // as the packet came
	Tags          []string
	Calls         []TraceCall // every callback that ran, in order
	Decision      Decision    // its Tags are the record's own copy
	Kernel        TraceKernel // what the kernel side did; zero without one
}

// TraceCall is one callback's run on a traced packet and the changes it
// made.
type TraceCall struct {
	Plugin   string
	Name     string
	Priority int
	Verdict  Verdict
	Failed   bool // it failed (error, timeout, quarantine): Verdict is its plugin's on_error
	Took     time.Duration
	MarkSet  bool   // it changed the packet mark
	Mark     uint32 // the mark after it, when MarkSet
	Tagged   []string
	Untagged []string
	CT       CTUpdate // the conntrack changes it asked for
}

// TraceKernel is what the kernel was told about a traced packet, as the
// program driving the worker reports it with Worker.TraceKernel.
type TraceKernel struct {
	Segment string // which diversion of the hook
	Verdict string
	Mark    uint32
	SetMark bool
}

// Tap is an attached trace. Its records arrive on C; Close detaches it.
type Tap struct {
	e      *Engine
	f      TraceFilter
	filter *plugin // the compiled Expr; nil without one
	c      chan *TraceRecord

	lost, filterErrors, matched atomic.Uint64
	lastFilterError             atomic.Pointer[string]
}

// Trace attaches a tap that queues at most queue records (default 256).
// It fails with ErrTraceBusy while another is attached, and with the
// error's position when Expr does not compile.
func (e *Engine) Trace(f TraceFilter, queue int) (*Tap, error) {
	if queue <= 0 {
		queue = 256
	}
	if f.Budget <= 0 {
		f.Budget = DefaultTraceBudget
	}
	t := &Tap{e: e, f: f, c: make(chan *TraceRecord, queue)}
	if strings.TrimSpace(f.Expr) != "" {
		p, err := e.compileFilter(f.Expr)
		if err != nil {
			return nil, err
		}
		t.filter = p
	}
	if !e.tap.CompareAndSwap(nil, t) {
		return nil, ErrTraceBusy
	}
	return t, nil
}

// compileFilter makes a plugin whose one callback returns the expression.
func (e *Engine) compileFilter(expr string) (*plugin, error) {
	// The expression alone must parse, so that it cannot close the function
	// it is wrapped in.
	if _, err := parse.Parse(strings.NewReader("return ("+expr+"\n)"), "filter"); err != nil {
		// The position is in the wrapped text: leave it out.
		msg := strings.Join(strings.Fields(err.Error()), " ")
		if i := strings.Index(msg, " near "); i >= 0 {
			msg = msg[i+1:]
		}
		return nil, fmt.Errorf("trace filter %q is not a Lua expression: %s", expr, msg)
	}
	src := "fw.register{name=\"filter\", hook=fw.hooks, fn=function(pkt) return (" + expr + "\n) end}"
	spec := PluginSpec{Name: "trace-filter", File: "trace filter", Source: []byte(src)}.normalize()
	proto, err := e.compile(context.Background(), spec)
	if err != nil {
		return nil, fmt.Errorf("trace filter: %w", err)
	}
	p := &plugin{spec: spec, proto: proto, files: map[string]*netset.Set{}, counters: &pluginCounters{}}
	if err := e.probe(p); err != nil {
		return nil, fmt.Errorf("trace filter: %w", err)
	}
	return p, nil
}

// C delivers the records of the matching packets.
func (t *Tap) C() <-chan *TraceRecord { return t.c }

// Lost counts records dropped because C was full.
func (t *Tap) Lost() uint64 { return t.lost.Load() }

// FilterErrors counts runs of the Lua filter that failed or timed out.
func (t *Tap) FilterErrors() uint64 { return t.filterErrors.Load() }

// LastFilterError is the error of the filter's latest failed run, "" if
// none failed.
func (t *Tap) LastFilterError() string {
	if p := t.lastFilterError.Load(); p != nil {
		return *p
	}
	return ""
}

// Matched counts packets that matched the filter (shown or lost).
func (t *Tap) Matched() uint64 { return t.matched.Load() }

// Close detaches the tap and has the workers release their filter states
// before their next packet. Workers finishing a packet may still queue a
// record on C; nothing reads it.
func (t *Tap) Close() {
	if t.e.tap.CompareAndSwap(t, nil) {
		t.e.askWorkers(choreTraceDone)
	}
}

// ParseProto reads a protocol name (tcp, udp, icmp, icmpv6) or number.
func ParseProto(s string) (uint8, error) {
	switch strings.ToLower(s) {
	case "tcp":
		return packet.ProtoTCP, nil
	case "udp":
		return packet.ProtoUDP, nil
	case "icmp":
		return packet.ProtoICMP, nil
	case "icmpv6", "ipv6-icmp":
		return packet.ProtoICMPv6, nil
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("unknown protocol %q (want tcp, udp, icmp, icmpv6 or a number 1..255)", s)
	}
	return uint8(n), nil
}

// ProtoName is the name scripts see for a protocol number (pkt.proto).
func ProtoName(p uint8) string {
	switch p {
	case packet.ProtoTCP:
		return "tcp"
	case packet.ProtoUDP:
		return "udp"
	case packet.ProtoICMP:
		return "icmp"
	case packet.ProtoICMPv6:
		return "icmpv6"
	}
	return strconv.Itoa(int(p))
}

// matchGo applies the filter's header fields.
func (f *TraceFilter) matchGo(p *Packet, pp *packet.Parsed) bool {
	if len(f.Hooks) > 0 && !slices.Contains(f.Hooks, p.Hook) {
		return false
	}
	if f.Proto != 0 && pp.Proto != f.Proto {
		return false
	}
	if f.Src.IsValid() && !f.Src.Contains(pp.Src) {
		return false
	}
	if f.Dst.IsValid() && !f.Dst.Contains(pp.Dst) {
		return false
	}
	if f.Port != 0 && pp.SrcPort != f.Port && pp.DstPort != f.Port {
		return false
	}
	return true
}

// matchOutcome applies the filter's fields that need the callbacks' run.
func (f *TraceFilter) matchOutcome(r *TraceRecord) bool {
	if len(f.Verdicts) > 0 && !slices.Contains(f.Verdicts, r.Decision.Verdict) {
		return false
	}
	if f.Plugin != "" && !slices.ContainsFunc(r.Calls, func(c TraceCall) bool { return c.Plugin == f.Plugin }) {
		return false
	}
	return true
}

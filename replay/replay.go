// Package replay runs the packets of a capture file through the engine's
// chains offline, along the path the kernel would take them (prerouting,
// forward, postrouting for transit traffic), with a small conntrack of its
// own, and reports what was decided for each packet. It is what
// `luafw replay` prints and what operators use to try scripts on real
// traffic before they go live.
package replay

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/luafw/luafw/host/packet"
	"github.com/luafw/luafw/internal/engine"
	"github.com/luafw/luafw/pcap"
)

// Paths are the kernel paths a packet can take, by name.
func Paths() map[string][]engine.Hook {
	return map[string][]engine.Hook{
		"forward": {engine.Prerouting, engine.Forward, engine.Postrouting},
		"in":      {engine.Prerouting, engine.Input},
		"out":     {engine.Output, engine.Postrouting},
	}
}

// ParsePath returns the hooks of a named path.
func ParsePath(name string) ([]engine.Hook, error) {
	p, ok := Paths()[name]
	if !ok {
		return nil, fmt.Errorf("unknown path %q (want forward, in or out)", name)
	}
	return p, nil
}

// Result is what happened to one packet (one JSON line of luafw replay).
type Result struct {
	N       int      `json:"n"`
	Src     string   `json:"src,omitempty"`   // addresses, protocol and ports, to find the packet
	Dst     string   `json:"dst,omitempty"`   // (absent when the packet is not IP)
	Proto   string   `json:"proto,omitempty"` // tcp, udp, icmp, icmpv6 or the protocol's name
	SPort   uint16   `json:"sport,omitempty"` // TCP, UDP, UDP-Lite and SCTP
	DPort   uint16   `json:"dport,omitempty"`
	Verdict string   `json:"verdict,omitempty"` // accept, drop or reject
	Hook    string   `json:"hook,omitempty"`    // where the walk ended
	By      *string  `json:"by"`                // plugin of the deciding verdict, or null
	Mark    uint32   `json:"mark"`
	CTMark  uint32   `json:"ct_mark"`
	CTState string   `json:"ct_state,omitempty"`
	Tags    []string `json:"tags"`
	Errors  int      `json:"errors,omitempty"` // callbacks that failed on this packet
	// Comment is the capture file's comment on the packet: for a file
	// luafw's capture wrote, the decision it was captured with.
	Comment string `json:"comment,omitempty"`
	// Rewritten: a callback changed the packet's bytes (see Replayer.Out).
	Rewritten bool `json:"rewritten,omitempty"`
	// Injected counts the packets callbacks sent for this one (fw.send,
	// pkt:reply_*).
	Injected int `json:"injected,omitempty"`
}

// skipped is the line for a record that is not an IP packet.
type skipped struct {
	N       int    `json:"n"`
	Skipped string `json:"skipped"`
}

// Summary counts what a replay did.
type Summary struct {
	Packets  int
	Skipped  int
	Verdicts map[string]int
	Errors   int
	Elapsed  time.Duration
}

func (s Summary) String() string {
	keys := make([]string, 0, len(s.Verdicts))
	for k := range s.Verdicts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, s.Verdicts[k]))
	}
	pps := 0.0
	if s.Elapsed > 0 {
		pps = float64(s.Packets) / s.Elapsed.Seconds()
	}
	return fmt.Sprintf("replay: %d packets (%s), %d skipped, %d callback errors, %v (%.0f packets/s)",
		s.Packets, strings.Join(parts, ", "), s.Skipped, s.Errors, s.Elapsed.Round(time.Microsecond), pps)
}

// Clock is the time scripts see during a replay: the timestamp of the
// packet being replayed, so that rate limits and TTLs behave as they did
// when the capture was taken. Give its Now to engine.Options.Clock.
type Clock struct{ ns atomic.Int64 }

// Now returns the current packet's time (the Unix epoch before the first).
func (c *Clock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

// Set moves the clock to t; a zero t (a record without a timestamp) leaves
// it where it was.
func (c *Clock) Set(t time.Time) {
	if !t.IsZero() {
		c.ns.Store(t.UnixNano())
	}
}

// Replayer runs packets along a path with its own flow table, so that
// pkt.ct.state and conntrack marks behave as they would in the kernel.
type Replayer struct {
	w     *engine.Worker
	path  []engine.Hook
	flows *pcap.Flows
	out   [][]byte // what left with the last packet (Out)
}

// New returns a replayer for the engine's running plugins. hooks, when not
// empty, limits the path to those hooks. Close it when done.
func New(eng *engine.Engine, path []engine.Hook, hooks []engine.Hook) *Replayer {
	if len(hooks) > 0 {
		path = slices.DeleteFunc(slices.Clone(path), func(h engine.Hook) bool { return !slices.Contains(hooks, h) })
	}
	return &Replayer{w: eng.NewWorker(), path: path, flows: pcap.NewFlows()}
}

// Close releases the replayer's worker.
func (r *Replayer) Close() { r.w.Close() }

// Packet runs one IP packet along the path. n numbers it in the result.
func (r *Replayer) Packet(n int, data []byte) Result {
	var p packet.Parsed
	p.Decode(data)
	res := Result{N: n, Verdict: "accept", Tags: []string{}}
	if p.Family != 0 {
		res.Src, res.Dst, res.Proto = p.Src.String(), p.Dst.String(), packet.ProtoName(p.Proto)
		res.SPort, res.DPort = p.SrcPort, p.DstPort
	}
	flow, state := r.track(&p, data)
	res.CTState = state
	ctState, _ := engine.ParseCTState(state)
	var mark uint32
	var tags []string
	r.out = r.out[:0]
	for _, hook := range r.path {
		pk := engine.Packet{Hook: hook, Data: data, Mark: mark, CTState: ctState, Tags: tags}
		if flow != nil {
			pk.CTMark, pk.CTMarkKnown = flow.Mark, true
			pk.CTPackets = uint64(flow.Packets)
		}
		d := r.w.Run(&pk)
		if d.Data != nil {
			data, res.Rewritten = d.Data, true // later hooks see the rewritten packet
		}
		for _, inj := range d.Injected {
			r.out = append(r.out, inj.Data)
			res.Injected++
		}
		res.Hook = hook.String()
		res.Errors += d.Errors
		mark = d.Mark
		tags = append(tags[:0:0], d.Tags...)
		if flow != nil && d.CT.Any() {
			ApplyCT(flow, d.CT)
		}
		if d.Verdict != engine.Accept {
			by := d.By
			res.By = &by
		}
		if d.Verdict == engine.Drop || d.Verdict == engine.Reject {
			res.Verdict = d.Verdict.String()
			break
		}
		// Stop accepts the packet at this hook; Repeat re-runs the hook
		// with luafw's diversions skipped. Either way it goes on.
	}
	if res.Verdict == "accept" {
		r.out = append(r.out, data)
	}
	res.Mark = mark
	if flow != nil {
		res.CTMark = flow.Mark
	}
	if tags != nil {
		res.Tags = tags
	}
	return res
}

// Out returns the packets that left with the last packet Packet ran: the
// packets callbacks injected, in order, then the packet itself as the
// callbacks left it, unless it was dropped or rejected. The slices are valid
// until the next Packet.
func (r *Replayer) Out() [][]byte { return r.out }

// track finds the packet's flow and its conntrack state.
func (r *Replayer) track(p *packet.Parsed, data []byte) (*pcap.Flow, string) {
	return Track(r.flows, p, data)
}

// Track finds a decoded packet's flow in flows, and its conntrack state as
// the kernel would give it: ICMP errors are related to the flow they quote,
// echo requests and replies share a flow by their identifier.
func Track(flows *pcap.Flows, p *packet.Parsed, data []byte) (*pcap.Flow, string) {
	if p.Family == 0 {
		return nil, pcap.StateInvalid
	}
	isErr := (p.Proto == packet.ProtoICMP && (p.ICMPType == 3 || p.ICMPType == 11 || p.ICMPType == 12)) ||
		(p.Proto == packet.ProtoICMPv6 && p.ICMPType >= 1 && p.ICMPType <= 4)
	if isErr {
		var inner packet.Parsed
		inner.Decode(p.Payload(data))
		if inner.Family == 0 {
			return nil, pcap.StateInvalid
		}
		return flows.ObserveICMPError(inner.Proto, inner.Src, inner.Dst, inner.SrcPort, inner.DstPort)
	}
	sport, dport := p.SrcPort, p.DstPort
	if p.Proto == packet.ProtoICMP || p.Proto == packet.ProtoICMPv6 {
		// Echo request and reply share a flow by their identifier.
		if p.L4Off >= 0 && len(data) >= p.L4Off+6 {
			id := uint16(data[p.L4Off+4])<<8 | uint16(data[p.L4Off+5])
			sport, dport = id, id
		}
	}
	return flows.Observe(p.Proto, p.Src, p.Dst, sport, dport, p.TCPFlags)
}

// ApplyCT carries a decision's conntrack updates out on a tracked flow.
func ApplyCT(f *pcap.Flow, u engine.CTUpdate) {
	if u.SetMark {
		f.Mark = f.Mark&^u.MarkMask | u.Mark&u.MarkMask
	}
	if u.SetLabels {
		f.Labels[0] |= u.Labels[0]
		f.Labels[1] |= u.Labels[1]
	}
	if u.SetTimeout {
		f.Timeout = time.Duration(u.Timeout) * time.Second
	}
}

// Options say how Run replays.
type Options struct {
	Path  []engine.Hook // the hooks each packet walks (see Paths)
	Hooks []engine.Hook // when set, only these hooks of the path
	// Clock, when set, is moved to each packet's timestamp before it runs,
	// and the engine's timers due by then are run (give the engine this
	// Clock's Now and ManualTimers).
	Clock *Clock
	// Out, when set, gets the packets as they leave (Replayer.Out), with
	// the timestamp of the packet they left with.
	Out *pcap.Writer
}

// Run replays every record of a capture and writes one JSON object per
// line to out.
func Run(ctx context.Context, eng *engine.Engine, capture io.Reader, opts Options, out io.Writer) (Summary, error) {
	path, hooks := opts.Path, opts.Hooks
	rd, err := pcap.NewReader(capture)
	if err != nil {
		return Summary{}, err
	}
	r := New(eng, path, hooks)
	defer r.Close()
	enc := json.NewEncoder(out)
	sum := Summary{Verdicts: map[string]int{}}
	start := time.Now()
	started := false // the clock has been set once
	for {
		if err := ctx.Err(); err != nil {
			return sum, err
		}
		pk, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return sum, err
		}
		if opts.Clock != nil && !pk.Time.IsZero() {
			// The plugins' timers (fw.every, fw.after) run on the
			// capture's time too, before the packet they precede, with
			// the clock at their own time. Their count starts at the
			// first packet: the timer states are made at the engine's
			// first look at its timers.
			if !started {
				opts.Clock.Set(pk.Time)
				started = true
			}
			eng.RunTimersUntil(pk.Time, opts.Clock.Set)
		}
		var line any
		if pk.Data == nil {
			line = skipped{N: pk.N, Skipped: pk.Skipped}
			sum.Skipped++
		} else {
			res := r.Packet(pk.N, pk.Data)
			res.Comment = pk.Comment
			if opts.Out != nil {
				for _, b := range r.Out() {
					if err := opts.Out.WritePacket(pk.Time, b); err != nil {
						return sum, fmt.Errorf("replay: writing packets: %w", err)
					}
				}
			}
			sum.Packets++
			sum.Verdicts[res.Verdict]++
			sum.Errors += res.Errors
			line = res
		}
		if err := enc.Encode(line); err != nil {
			return sum, fmt.Errorf("replay: writing results: %w", err)
		}
	}
	sum.Elapsed = time.Since(start)
	return sum, nil
}

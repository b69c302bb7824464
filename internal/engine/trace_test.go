package engine

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

const tracePlugins = `
fw.register{name="mark", hook="forward", priority=-10, fn=function(pkt)
	pkt:set_mark(0x10, 0xff)
	pkt:tag("seen")
	pkt.ct:set_mark(7)
end}
fw.register{name="telnet", hook="forward", fn=function(pkt)
	if pkt.dport == 23 then return fw.DROP end
end}
`

// drain takes the records queued so far.
func drain(t *Tap) []*TraceRecord {
	var out []*TraceRecord
	for {
		select {
		case r := <-t.C():
			out = append(out, r)
		default:
			return out
		}
	}
}

func TestTraceRecordsCallbacksAndChanges(t *testing.T) {
	tap, w := tracedWorker(t, TraceFilter{Port: 23}, 16)
	w.Run(&Packet{Hook: Forward, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 4000, 80, 0)})
	d := w.Run(&Packet{Hook: Forward, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 4000, 23, 0)})
	if d.Verdict != Drop {
		t.Fatalf("verdict %v", d.Verdict)
	}
	recs := drain(tap)
	if len(recs) != 1 {
		t.Fatalf("%d records, want the one to port 23", len(recs))
	}
	r := recs[0]
	if r.Hook != Forward || r.Src != netip.MustParseAddr("10.0.0.1") || r.DPort != 23 || ProtoName(r.Proto) != "tcp" {
		t.Errorf("header fields: %+v", r)
	}
	if len(r.Calls) != 2 {
		t.Fatalf("calls %+v", r.Calls)
	}
	m, tel := r.Calls[0], r.Calls[1]
	if m.Name != "mark" || m.Plugin != "guard" || !m.MarkSet || m.Mark != 0x10 || len(m.Tagged) != 1 || m.Tagged[0] != "seen" ||
		!m.CT.SetMark || m.CT.Mark != 7 || m.Verdict != Accept {
		t.Errorf("first call %+v", m)
	}
	if tel.Name != "telnet" || tel.Verdict != Drop || tel.MarkSet || tel.Tagged != nil || tel.CT.Any() {
		t.Errorf("second call %+v", tel)
	}
	if r.Decision.Verdict != Drop || r.Decision.ByName != "telnet" || r.Decision.Mark != 0x10 {
		t.Errorf("decision %+v", r.Decision)
	}
	if tap.Matched() != 1 || tap.Lost() != 0 {
		t.Errorf("matched %d lost %d", tap.Matched(), tap.Lost())
	}
}

func TestTraceFilters(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e, src("guard", tracePlugins))
	pkts := []*Packet{
		{Hook: Forward, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 4000, 23, 0)},
		{Hook: Forward, Data: tcpPkt(t, "10.0.0.3", "10.0.0.2", 4000, 80, 0)},
		{Hook: Forward, Data: udpPkt(t, "10.0.0.1", "10.0.0.9", 53, 5353, nil)},
		{Hook: Input, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 4000, 23, 0)},
	}
	for _, tc := range []struct {
		name string
		f    TraceFilter
		want []int // indexes of pkts traced
	}{
		{"all", TraceFilter{}, []int{0, 1, 2, 3}},
		{"proto", TraceFilter{Proto: 17}, []int{2}},
		{"src", TraceFilter{Src: netip.MustParsePrefix("10.0.0.3/32")}, []int{1}},
		{"dst", TraceFilter{Dst: netip.MustParsePrefix("10.0.0.0/30")}, []int{0, 1, 3}},
		{"port either side", TraceFilter{Port: 53}, []int{2}},
		{"hook", TraceFilter{Hooks: []Hook{Input}}, []int{3}},
		{"verdict", TraceFilter{Verdicts: []Verdict{Drop}}, []int{0}},
		{"plugin", TraceFilter{Plugin: "guard"}, []int{0, 1, 2}},
		{"expr", TraceFilter{Expr: `pkt.proto == "tcp" and pkt.dport == 80`}, []int{1}},
		{"expr and flags", TraceFilter{Expr: `pkt.dport == 23`, Hooks: []Hook{Forward}}, []int{0}},
		{"expr cannot change the packet", TraceFilter{Expr: `pkt:set_mark(99) or pkt:tag("x") or true`, Port: 80}, []int{1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tap, err := e.Trace(tc.f, 16)
			if err != nil {
				t.Fatal(err)
			}
			defer tap.Close()
			w := e.NewWorker()
			defer w.Close()
			for _, p := range pkts {
				if d := w.Run(p); d.Mark == 99 || (p.Hook == Forward && len(d.Tags) != 1) {
					t.Errorf("the filter changed the packet: %+v", d)
				}
			}
			var got []int
			for _, r := range drain(tap) {
				for i, p := range pkts {
					if p.Hook == r.Hook && r.Src.String() == srcOf(p) && r.DPort == dportOf(p) && r.Dst.String() == dstOf(p) {
						got = append(got, i)
					}
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("traced %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("traced %v, want %v", got, tc.want)
				}
			}
			if tap.FilterErrors() != 0 {
				t.Errorf("filter errors %d", tap.FilterErrors())
			}
		})
	}
}

func srcOf(p *Packet) string {
	var c Ctx
	c.pkt = p
	return c.Parsed().Src.String()
}

func dstOf(p *Packet) string {
	var c Ctx
	c.pkt = p
	return c.Parsed().Dst.String()
}

func dportOf(p *Packet) uint16 {
	var c Ctx
	c.pkt = p
	return c.Parsed().DstPort
}

func TestTraceFilterErrorsMatchNothing(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e, src("guard", tracePlugins))
	// A field the packet lacks, named in the text, is refused at attach
	// (the static checks); one computed at run time errors per packet.
	if _, err := e.Trace(TraceFilter{Expr: `pkt.nosuchfield == 1`}, 16); err == nil || !strings.Contains(err.Error(), "pkt.nosuchfield: no such field in pkt") {
		t.Fatalf("filter with an unknown field: %v", err)
	}
	for _, expr := range []string{`pkt["nosuch" .. "field"] == 1`, `(function() while true do end end)()`} {
		tap, err := e.Trace(TraceFilter{Expr: expr, Budget: 5 * time.Millisecond}, 16)
		if err != nil {
			t.Fatal(err)
		}
		w := e.NewWorker()
		for range 3 {
			if d := w.Run(&Packet{Hook: Forward, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 4000, 23, 0)}); d.Verdict != Drop {
				t.Errorf("%s: the packet's verdict changed: %v", expr, d.Verdict)
			}
		}
		if n := len(drain(tap)); n != 0 || tap.FilterErrors() != 3 {
			t.Errorf("%s: %d records, %d filter errors; want 0 and 3", expr, n, tap.FilterErrors())
		}
		w.Close()
		tap.Close()
	}
}

func TestTraceAttachRules(t *testing.T) {
	e, _ := newTestEngine(t)
	if _, err := e.Trace(TraceFilter{Expr: "pkt.dport == "}, 1); err == nil || !strings.Contains(err.Error(), "trace filter") {
		t.Errorf("syntax error: %v", err)
	}
	if _, err := e.Trace(TraceFilter{Expr: "true) end print(1"}, 1); err == nil {
		t.Error("an expression that closes its function compiled")
	}
	tap, err := e.Trace(TraceFilter{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Trace(TraceFilter{}, 1); !errors.Is(err, ErrTraceBusy) {
		t.Errorf("second trace: %v", err)
	}
	tap.Close()
	tap2, err := e.Trace(TraceFilter{}, 1)
	if err != nil {
		t.Fatalf("after detaching: %v", err)
	}
	tap2.Close()
}

// tracedWorker is a worker of an engine running tracePlugins, with a tap
// attached.
func tracedWorker(t *testing.T, f TraceFilter, queue int) (*Tap, *Worker) {
	t.Helper()
	e, _ := newTestEngine(t)
	mustLoad(t, e, src("guard", tracePlugins))
	tap, err := e.Trace(f, queue)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tap.Close)
	w := e.NewWorker()
	t.Cleanup(w.Close)
	return tap, w
}

func TestTraceSlowReaderLosesRecords(t *testing.T) {
	tap, w := tracedWorker(t, TraceFilter{}, 4)
	p := &Packet{Hook: Forward, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 4000, 23, 0)}
	for range 100 {
		if d := w.Run(p); d.Verdict != Drop {
			t.Fatal(d.Verdict)
		}
	}
	if got := len(drain(tap)); got != 4 || tap.Lost() != 96 || tap.Matched() != 100 {
		t.Errorf("queued %d lost %d matched %d; want 4, 96, 100", got, tap.Lost(), tap.Matched())
	}
}

func TestTraceHeldForKernel(t *testing.T) {
	tap, w := tracedWorker(t, TraceFilter{}, 4)
	w.HoldTraces()
	w.Run(&Packet{Hook: Forward, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 4000, 23, 0)})
	if !w.TracePending() || len(tap.C()) != 0 {
		t.Fatal("the record did not wait for the kernel verdict")
	}
	w.TraceKernel(TraceKernel{Segment: "forward/0", Verdict: "drop"})
	recs := drain(tap)
	if len(recs) != 1 || recs[0].Kernel.Verdict != "drop" || recs[0].Kernel.Segment != "forward/0" || w.TracePending() {
		t.Fatalf("records %+v", recs)
	}
}

func TestTraceDetachReleasesFilterState(t *testing.T) {
	tap, w := tracedWorker(t, TraceFilter{Expr: "true"}, 4)
	p := &Packet{Hook: Forward, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 4000, 80, 0)}
	w.Run(p)
	if w.tr == nil || w.tr.fs == nil {
		t.Fatal("no filter state while attached")
	}
	tap.Close()
	w.Run(p)
	if w.tr.fs != nil || w.tr.tap != nil {
		t.Error("the filter state outlived the tap")
	}
	if n := len(drain(tap)); n != 1 {
		t.Errorf("%d records, want the one from before detaching", n)
	}
}

func TestTraceShowsRewrites(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e, src("ttl", `fw.register{hook="forward", fn=function(pkt) pkt:set_ttl(9) end}`))
	tap, err := e.Trace(TraceFilter{}, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	w := e.NewWorker()
	defer w.Close()
	w.Run(&Packet{Hook: Forward, Data: udpPkt(t, "10.0.0.1", "10.0.0.2", 53, 5353, []byte("x"))})
	recs := drain(tap)
	if len(recs) != 1 || recs[0].Decision.Data == nil {
		t.Fatalf("records %+v", recs)
	}
}

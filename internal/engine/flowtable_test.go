package engine

import (
	"strings"
	"testing"
	"time"
)

func TestFlowTableLivesWithTheFlow(t *testing.T) {
	e, clk, _ := newTimerEngine(t)
	mustLoad(t, e, src("flow", `
fw.register{hook = "input", fn = function(pkt)
  local f = pkt.flow
  f.n = (f.n or 0) + 1
  if pkt.flow ~= f then error("pkt.flow changed within a call") end
  pkt:tag("n=" .. f.n)
end}`), src("untouched", `fw.register{hook = "input", fn = function(pkt) end}`))
	w := e.NewWorker()
	defer w.Close()
	n := func(data []byte) string {
		t.Helper()
		d := w.Run(&Packet{Hook: Input, Data: data})
		if d.Errors != 0 || len(d.Tags) != 1 {
			t.Fatalf("decision %+v", d)
		}
		return d.Tags[0]
	}
	syn := tcpPkt(t, "10.0.0.1", "10.0.0.2", 40000, 80, 0x02)
	synAck := tcpPkt(t, "10.0.0.2", "10.0.0.1", 80, 40000, 0x12)
	other := tcpPkt(t, "10.0.0.1", "10.0.0.2", 40001, 80, 0x02)
	for i, tc := range []struct {
		data []byte
		want string
	}{
		{syn, "n=1"}, {synAck, "n=2"}, // the reply reads what the request wrote
		{other, "n=1"}, // another flow: a table of its own
		{syn, "n=3"},
	} {
		if got := n(tc.data); got != tc.want {
			t.Fatalf("packet %d: %s, want %s", i, got, tc.want)
		}
	}
	// A RST closes the flow: its table goes FlowClosedTimeout later.
	n(tcpPkt(t, "10.0.0.2", "10.0.0.1", 80, 40000, 0x04))
	clk.set(clk.Now().Add(FlowClosedTimeout + time.Second))
	if got := n(syn); got != "n=1" {
		t.Fatalf("after the RST and %v: %s, want a fresh table", FlowClosedTimeout, got)
	}
	// UDP: dropped after FlowOtherTimeout idle, kept while packets come.
	dns := udpPkt(t, "10.0.0.1", "10.0.0.53", 5353, 53, []byte("q"))
	n(dns)
	clk.set(clk.Now().Add(FlowOtherTimeout - time.Second))
	if got := n(dns); got != "n=2" {
		t.Fatalf("UDP within its timeout: %s, want n=2", got)
	}
	clk.set(clk.Now().Add(FlowOtherTimeout + time.Second))
	if got := n(dns); got != "n=1" {
		t.Fatalf("UDP after its timeout: %s, want a fresh table", got)
	}
	// The plugin that never reads pkt.flow has no table at all.
	if w.ps[1].flows != nil || w.ps[0].flowCount() == 0 {
		t.Fatalf("flow tables: untouched %v, flow %d entries", w.ps[1].flows, w.ps[0].flowCount())
	}
}

func TestFlowTablesCountTowardsMemory(t *testing.T) {
	e, _, buf := newTimerEngine(t)
	spec := src("hog", `
fw.register{hook = "input", fn = function(pkt)
  pkt.flow.junk = string.rep("x", 64 * 1024) .. pkt.sport
end}`)
	spec.Memory = 1 << 20
	mustLoad(t, e, spec)
	w := e.NewWorker()
	defer w.Close()
	for i := 0; i < 2000 && !strings.Contains(buf.String(), "plugin over its memory limit"); i++ {
		w.Run(&Packet{Hook: Input, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", uint16(1000+i), 80, 0x02)})
		if i%16 == 0 {
			e.askWorkers(choreMeasure)
			time.Sleep(time.Millisecond)
		}
	}
	if !strings.Contains(buf.String(), "plugin over its memory limit") {
		t.Fatalf("flow tables holding MiBs were not counted:\n%s", buf)
	}
}

package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestPlanSweep: the default plan runs every point with every consumer
// once, the evenly spaced points one datagram per call from one source, the
// burst points whole batches from 32 sources, and rotates the consumers'
// order from point to point.
func TestPlanSweep(t *testing.T) {
	runs, err := planSweep("", "", 64)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != len(sweepPoints)*len(sweepConsumers) {
		t.Fatalf("%d runs, want %d", len(runs), len(sweepPoints)*len(sweepConsumers))
	}
	seen := map[string]int{}
	firsts := map[string]bool{}
	for i, r := range runs {
		seen[sweepRowID(r.Point.Name, r.Consumer.Name)]++
		if i%len(sweepConsumers) == 0 {
			firsts[r.Consumer.Name] = true
		}
	}
	for _, p := range sweepPoints {
		for _, c := range sweepConsumers {
			if n := seen[sweepRowID(p.Name, c.Name)]; n != 1 {
				t.Errorf("%s/%s runs %d times, want once", p.Name, c.Name, n)
			}
		}
	}
	if len(firsts) != len(sweepConsumers) {
		t.Errorf("consumers running first at a point: %v, want each in turn", firsts)
	}
	byName := map[string]sweepPoint{}
	for _, r := range runs {
		byName[r.Point.Name] = r.Point
	}
	for _, name := range []string{"rate200even", "rate1000even"} {
		p := byName[name]
		if !p.even() || p.Sources != 1 || p.Batch != 1 || p.Rate == 0 {
			t.Errorf("%s: %+v, want evenly spaced from one source", name, p)
		}
	}
	for name, rate := range map[string]int{"rate15k": 15000, "rate60k": 60000} {
		p := byName[name]
		if p.even() || p.Sources != 32 || p.Batch != 64 || p.Rate != rate {
			t.Errorf("%s: %+v, want %d pps in bursts of 64 from 32 sources", name, p, rate)
		}
	}
	if p := byName["flood"]; p.Rate != 0 || p.even() {
		t.Errorf("flood: %+v, want no pacing", p)
	}
}

func TestPlanSweepSubsets(t *testing.T) {
	runs, err := planSweep(" flood,rate200even", "trivial,batched", 8)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range runs {
		got = append(got, sweepRowID(r.Point.Name, r.Consumer.Name))
		if r.Point.Sources > 8 {
			t.Errorf("%s: %d sources, the bench has 8", r.Point.Name, r.Point.Sources)
		}
	}
	want := "sweep/rate200even/batched sweep/rate200even/trivial sweep/flood/trivial sweep/flood/batched"
	if strings.Join(got, " ") != want {
		t.Errorf("runs %v, want %s", got, want)
	}
	for _, bad := range [][2]string{{"rate5", ""}, {"", "plain"}} {
		if _, err := planSweep(bad[0], bad[1], 64); err == nil || !strings.Contains(err.Error(), "unknown") {
			t.Errorf("planSweep(%q, %q): err %v, want unknown name", bad[0], bad[1], err)
		}
	}
}

// TestSweepResults: finish divides each sweep row by the batched reader's
// of the same point, the goals take the worst point, and print gives the
// markdown summary.
func TestSweepResults(t *testing.T) {
	r := &Results{Settings: map[string]any{}, Configs: map[string][]string{}, LoadBefore: "1.00 2.00 3.00"}
	row := func(point, consumer string, target int, us, cpu float64) Row {
		return Row{ID: sweepRowID(point, consumer), Kind: "udp-sweep", Point: point, Consumer: consumer, Queues: 1,
			Offered: point + " offered", TargetPPS: target, SentPPS: float64(target), RecvPPS: float64(target),
			CPUPerPacket: us, ConsumerCPU: cpu}
	}
	r.Rows = []Row{
		row("rate200even", "batched", 200, 75, 1.5),
		row("rate200even", "trivial", 200, 440, 8.8),
		row("rate60k", "trivial", 60000, 2.2, 13.2),
		row("rate60k", "batched", 60000, 2.0, 12),
		row("rate60k", "realistic", 60000, 3, 18),
	}
	r.finish()
	for id, want := range map[string]float64{
		"sweep/rate200even/trivial": 5.867, "sweep/rate60k/trivial": 1.1, "sweep/rate60k/realistic": 1.5, "sweep/rate60k/batched": 0,
	} {
		if got := r.row(id).CPUVsBatched; got != want {
			t.Errorf("%s: CPU/packet vs batched %v, want %v", id, got, want)
		}
	}
	goals := map[string]Goal{}
	for _, g := range r.Goals {
		goals[g.What] = g
	}
	if g := goals["sweep, trivial: CPU/packet vs batched, worst of 2 rates"]; !g.Known || g.Met || g.Got != 5.867 {
		t.Errorf("trivial sweep goal %+v, want the worst point (5.867) and not met", g)
	}
	if g := goals["sweep, realistic: CPU/packet vs batched, worst of 1 rates"]; !g.Known || !g.Met {
		t.Errorf("realistic sweep goal %+v, want met", g)
	}
	var out bytes.Buffer
	r.print(&out)
	for _, want := range []string{
		"| offered traffic | achieved pps | batched reader | luafw, one trivial plugin | ratio | luafw, realistic config | ratio |",
		"| rate200even offered | 200 | 75.0 µs (1.5%) | 440 µs (8.8%) | 5.87× | - | - |",
		"| rate60k offered | 60000 | 2.00 µs (12.0%) | 2.20 µs (13.2%) | 1.10× | 3.00 µs (18.0%) | 1.50× |",
		"| rate60k | realistic | 60000 |",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/luafw/luafw/tests/lab"
)

// The sweep measures consumer CPU per delivered packet at fixed offered
// rates (issue 19): a consumer that wakes on a timer pays that timer at
// every rate, which a flood, spreading it over many packets, hides. Each
// point runs every consumer in turn, beside the batched reader (the floor)
// in the same run; the order of the consumers rotates from point to point.

// sweepPoint is one offered rate of the sweep.
type sweepPoint struct {
	Name    string // row name, e.g. rate200even
	Rate    int    // datagrams/s offered; 0: a flood
	Sources int    // client addresses the sender rotates over
	Batch   int    // datagrams per sendmmsg; 1 with a rate: evenly spaced
	What    string // the offered traffic in words
}

// even reports whether the point's datagrams are evenly spaced (one per
// deadline) rather than sent in bursts.
func (p sweepPoint) even() bool { return p.Rate > 0 && p.Batch == 1 }

// sweepPoints are the sweep's points, in the order they run.
var sweepPoints = []sweepPoint{
	{"rate200even", 200, 1, 1, "200 pps, evenly spaced (one source)"},
	{"rate1000even", 1000, 1, 1, "1,000 pps, evenly spaced (one source)"},
	{"rate15k", 15_000, 32, 64, "15k pps, 32 sources in bursts of 64"},
	{"rate60k", 60_000, 32, 64, "60k pps, 32 sources in bursts of 64"},
	{"flood", 0, 32, 64, "flood, 32 sources, sendmmsg of 64"},
}

// sweepConsumer is one consumer of the sweep.
type sweepConsumer struct {
	Name   string // batched, trivial, realistic
	Config string // luafw's configuration; empty: the batched reader
	Setup  string
}

// sweepConsumers are the consumers the sweep compares; the first is the
// floor the others are divided by.
var sweepConsumers = []sweepConsumer{
	{"batched", "", "batched reader"},
	{"trivial", "trivial-q1", "luafw, one trivial plugin"},
	{"realistic", "realistic-q1", "luafw, realistic config"},
}

// sweepRun is one measurement of the sweep: a point and a consumer.
type sweepRun struct {
	Point    sweepPoint
	Consumer sweepConsumer
}

// planSweep turns the -sweep-points and -sweep-consumers lists (empty: all)
// into the runs, in order: point by point, each point's consumers rotated
// by one from the previous point's, so that no consumer always runs first.
// Points needing more sources than the bench has (-sources) get all it has.
func planSweep(points, consumers string, sources int) ([]sweepRun, error) {
	ps, err := pick(points, sweepPoints, func(p sweepPoint) string { return p.Name })
	if err != nil {
		return nil, fmt.Errorf("-sweep-points: %w", err)
	}
	cs, err := pick(consumers, sweepConsumers, func(c sweepConsumer) string { return c.Name })
	if err != nil {
		return nil, fmt.Errorf("-sweep-consumers: %w", err)
	}
	if sources < 1 {
		return nil, fmt.Errorf("sweep: %d sources", sources)
	}
	var runs []sweepRun
	for i, p := range ps {
		p.Sources = min(p.Sources, sources)
		for j := range cs {
			runs = append(runs, sweepRun{Point: p, Consumer: cs[(i+j)%len(cs)]})
		}
	}
	return runs, nil
}

// pick returns the entries of all named in list (comma-separated, in all's
// order), or all of them for an empty list.
func pick[T any](list string, all []T, name func(T) string) ([]T, error) {
	want := map[string]bool{}
	for _, n := range strings.Split(list, ",") {
		if n = strings.TrimSpace(n); n != "" {
			want[n] = true
		}
	}
	if len(want) == 0 {
		return all, nil
	}
	var out []T
	for _, x := range all {
		if want[name(x)] {
			out = append(out, x)
			delete(want, name(x))
		}
	}
	if len(want) > 0 {
		var known, unknown []string
		for _, x := range all {
			known = append(known, name(x))
		}
		for n := range want {
			unknown = append(unknown, n)
		}
		return nil, fmt.Errorf("unknown %s (known: %s)", strings.Join(unknown, ", "), strings.Join(known, ", "))
	}
	return out, nil
}

// sweepRowID is the row ID of one sweep measurement.
func sweepRowID(point, consumer string) string { return "sweep/" + point + "/" + consumer }

// sweepRows runs the sweep (group "sweep").
func (b *bench) sweepRows(ctx context.Context) error {
	runs, err := planSweep(b.opt.sweepPoints, b.opt.sweepConsumers, len(b.sources))
	if err != nil {
		return err
	}
	for _, s := range runs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := b.sweepOne(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", sweepRowID(s.Point.Name, s.Consumer.Name), err)
		}
	}
	return nil
}

// sweepOne starts the run's consumer, lets it settle, sends the point's
// traffic and records the row.
func (b *bench) sweepOne(ctx context.Context, s sweepRun) error {
	p := s.Point
	r := Row{ID: sweepRowID(p.Name, s.Consumer.Name), Setup: s.Consumer.Setup, Queues: 1,
		Point: p.Name, Consumer: s.Consumer.Name, Offered: p.What, Sources: p.Sources, Batch: p.Batch}
	bl := lab.Blast{Sources: b.sources[:p.Sources], Duration: b.opt.sweepDuration, Rate: p.Rate, Batch: p.Batch, Burst: p.Rate > 0 && !p.even()}
	measure := func(c *consumer) error {
		// Let the consumer's start-up work (loading, the first GC) end
		// before the measurement.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(b.opt.sweepSettle):
		}
		r.Load1 = strings.Fields(loadAvg())[0]
		if err := b.floodWith(ctx, &r, c, bl, false); err != nil {
			return err
		}
		r.Kind = "udp-sweep"
		b.add(r)
		return nil
	}
	if s.Consumer.Config == "" {
		return b.baseline(ctx, "batched", 1, measure)
	}
	return b.luafw(ctx, s.Consumer.Config, measure)
}

// sweepFinish sets each sweep row's ratios to the batched reader's row of
// the same point.
func sweepFinish(r *Results) {
	for i := range r.Rows {
		x := &r.Rows[i]
		if x.Kind != "udp-sweep" || x.Consumer == sweepConsumers[0].Name {
			continue
		}
		if bx := r.row(sweepRowID(x.Point, sweepConsumers[0].Name)); bx != nil {
			x.CPUVsBatched = ratio(x.CPUPerPacket, bx.CPUPerPacket)
			x.VsBatched = ratio(x.RecvPPS, bx.RecvPPS)
		}
	}
}

// sweepGoalRows are issue 19's goals: CPU per packet at every rate of the
// sweep at most this many times the batched reader's.
var sweepGoalRows = []struct {
	consumer string
	max      float64
}{{"trivial", 1.3}, {"realistic", 1.8}}

// sweepGoals checks the worst ratio over the sweep's points per consumer
// (only when the sweep ran).
func sweepGoals(r *Results, goal func(what, want, unit string, got float64, known, met bool)) {
	for _, g := range sweepGoalRows {
		worst, n := 0.0, 0
		for _, x := range r.Rows {
			if x.Kind == "udp-sweep" && x.Consumer == g.consumer && x.CPUVsBatched > 0 {
				worst, n = max(worst, x.CPUVsBatched), n+1
			}
		}
		if n == 0 {
			continue
		}
		goal(fmt.Sprintf("sweep, %s: CPU/packet vs batched, worst of %d rates", g.consumer, n),
			fmt.Sprintf("<= %.2f", g.max), "x", worst, true, worst <= g.max)
	}
}

// printSweep writes the sweep as markdown tables: a summary as in the
// README (one line per offered rate, each consumer's CPU per packet and %
// of a core, and its ratio to the batched reader), then every row.
func printSweep(w io.Writer, r *Results) {
	var points []string
	cons := map[string]bool{}
	for _, x := range r.Rows {
		if x.Kind != "udp-sweep" {
			continue
		}
		if !slices.Contains(points, x.Point) {
			points = append(points, x.Point)
		}
		cons[x.Consumer] = true
	}
	if len(points) == 0 {
		return
	}
	var cs []sweepConsumer
	for _, c := range sweepConsumers {
		if cons[c.Name] {
			cs = append(cs, c)
		}
	}
	floor := sweepConsumers[0].Name
	fmt.Fprintf(w, "\nCPU per packet at fixed offered rates (consumer utime+stime / delivered packets; %% of one core; ratio to the batched reader of the same point); load average before %s\n\n", r.LoadBefore)
	head := "| offered traffic | achieved pps |"
	sep := "|---|---|"
	for _, c := range cs {
		head += " " + c.Setup + " |"
		sep += "---|"
		if c.Name != floor && cons[floor] {
			head += " ratio |"
			sep += "---|"
		}
	}
	fmt.Fprintln(w, head)
	fmt.Fprintln(w, sep)
	for _, pt := range points {
		var what string
		lo, hi := 0.0, 0.0
		cells := ""
		for _, c := range cs {
			x := r.row(sweepRowID(pt, c.Name))
			if x == nil {
				cells += " - |"
				if c.Name != floor && cons[floor] {
					cells += " - |"
				}
				continue
			}
			what = x.Offered
			if lo == 0 || x.SentPPS < lo {
				lo = x.SentPPS
			}
			hi = max(hi, x.SentPPS)
			cells += fmt.Sprintf(" %s µs (%.1f%%) |", usCell(x.CPUPerPacket), x.ConsumerCPU)
			if c.Name != floor && cons[floor] {
				cells += " " + timesCell(x.CPUVsBatched) + " |"
			}
		}
		achieved := fmt.Sprintf("%.0f", lo)
		if hi-lo >= 0.5 {
			achieved = fmt.Sprintf("%.0f–%.0f", lo, hi)
		}
		fmt.Fprintf(w, "| %s | %s |%s\n", what, achieved, cells)
	}

	fmt.Fprintf(w, "\nsweep rows (in the order they ran)\n\n")
	fmt.Fprintln(w, "| point | consumer | target pps | sent pps | mean burst | late sends % | max late µs | recv pps | loss % | consumer CPU % | CPU µs/pkt | CPU/pkt vs batched | load 1 min |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, x := range r.Rows {
		if x.Kind != "udp-sweep" {
			continue
		}
		target, latePct, late := "flood", "-", "-"
		if x.TargetPPS > 0 {
			target, latePct, late = fmt.Sprint(x.TargetPPS), fmt.Sprintf("%.2f", x.LatePct), fmt.Sprintf("%.0f", x.MaxLateUs)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %.0f | %.1f | %s | %s | %.0f | %.2f | %.1f | %s | %s | %s |\n", x.Point, x.Consumer, target, x.SentPPS,
			x.MeanBurst, latePct, late, x.RecvPPS, x.LossPct, x.ConsumerCPU, usCell(x.CPUPerPacket), timesCell(x.CPUVsBatched), x.Load1)
	}
}

// usCell formats µs per packet with about three significant digits.
func usCell(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func timesCell(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f×", v)
}

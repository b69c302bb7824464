package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// Results is everything one run measured; it is written as JSON.
type Results struct {
	Started    time.Time           `json:"started"`
	Seconds    float64             `json:"seconds"`
	Kernel     string              `json:"kernel"`
	CPUs       int                 `json:"cpus"`
	GoVersion  string              `json:"go_version"`
	Commit     string              `json:"commit,omitempty"`
	LoadBefore string              `json:"load_before"`
	LoadAfter  string              `json:"load_after"`
	Settings   map[string]any      `json:"settings"`
	Configs    map[string][]string `json:"configs"` // each configuration's chain segments
	Rows       []Row               `json:"rows"`
	Goals      []Goal              `json:"goals"`
	Errors     []string            `json:"errors,omitempty"`
}

// Goal is one of luafw's performance goals, checked against the rows.
type Goal struct {
	What  string  `json:"what"`
	Want  string  `json:"want"`
	Got   float64 `json:"got"`
	Unit  string  `json:"unit"`
	Met   bool    `json:"met"`
	Known bool    `json:"measured"`
}

func newResults(o options) *Results {
	r := &Results{Started: time.Now(), CPUs: runtime.NumCPU(), GoVersion: runtime.Version(),
		LoadBefore: loadAvg(), Configs: map[string][]string{},
		Settings: map[string]any{
			"flood_seconds": o.duration.Seconds(), "payload_bytes": o.size, "sources": o.sources,
			"max_packets": o.maxPackets, "rtt_count": o.echoCount, "blocklist_cidrs": o.listSize,
			"rate_pct": o.ratePct, "tcp_seconds": o.tcpTime.Seconds(), "sink": o.sinkMode,
			"sweep_seconds": o.sweepDuration.Seconds(), "sweep_settle_seconds": o.sweepSettle.Seconds(), "luafw": o.luafw,
		}}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		r.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command("git", "-C", o.repo, "describe", "--always", "--dirty").Output(); err == nil {
		r.Commit = strings.TrimSpace(string(out))
	}
	return r
}

// loadAvg is the first three fields of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func (r *Results) row(id string) *Row {
	for i := range r.Rows {
		if r.Rows[i].ID == id {
			return &r.Rows[i]
		}
	}
	return nil
}

func ratio(a, b float64) float64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	return round(a/b, 3)
}

// finish computes the ratios between rows and checks the goals.
func (r *Results) finish() {
	r.Seconds = round(time.Since(r.Started).Seconds(), 1)
	r.LoadAfter = loadAvg()
	pps := func(id string) float64 {
		if x := r.row(id); x != nil {
			return x.RecvPPS
		}
		return 0
	}
	for i := range r.Rows {
		x := &r.Rows[i]
		switch x.Kind {
		case "udp-flood":
			if x.ID != "udp/kernel" {
				x.VsKernel = ratio(x.RecvPPS, pps("udp/kernel"))
			}
			if x.Queues == 2 {
				if one := r.row(strings.TrimSuffix(x.ID, "q2") + "q1"); one != nil {
					x.CPUVsOneQueue = ratio(x.CPUPerPacket, one.CPUPerPacket)
				}
			}
			if !strings.HasPrefix(x.ID, "udp/luafw") {
				continue
			}
			x.VsKernelCT = ratio(x.RecvPPS, pps("udp/kernel-ct"))
			q := "q1"
			if x.Queues == 2 {
				q = "q2"
				x.VsOneQueue = ratio(x.RecvPPS, pps(strings.TrimSuffix(x.ID, "q2")+"q1"))
			}
			x.VsPlain = ratio(x.RecvPPS, pps("udp/plain/q1"))
			x.VsBatched = ratio(x.RecvPPS, pps("udp/batched/"+q))
			if bx := r.row("udp/batched/" + q); bx != nil {
				x.PerCoreVsBatch = ratio(x.PerCore, bx.PerCore)
				x.CPUVsBatched = ratio(x.CPUPerPacket, bx.CPUPerPacket)
			}
		case "tcp-bulk":
			if k := r.row("tcp/kernel"); k != nil && x.ID != k.ID {
				x.VsKernel = ratio(x.Gbps, k.Gbps)
			}
			if k := r.row("tcp/kernel-ct"); k != nil && strings.HasPrefix(x.ID, "tcp/luafw") {
				x.VsKernelCT = ratio(x.Gbps, k.Gbps)
			}
		case "udp-rtt":
			if k := r.row("rtt/kernel"); k != nil && x.ID != k.ID {
				x.AddedP50 = round(x.P50us-k.P50us, 1)
				x.AddedP99 = round(x.P99us-k.P99us, 1)
			}
		}
	}
	sweepFinish(r)
	if x := r.row("udp/batched/q2"); x != nil {
		x.VsOneQueue = ratio(x.RecvPPS, pps("udp/batched/q1"))
	}

	goal := func(what, want, unit string, got float64, known, met bool) {
		r.Goals = append(r.Goals, Goal{What: what, Want: want, Got: got, Unit: unit, Known: known, Met: known && met})
	}
	rowGoal := func(what, id string, get func(*Row) float64, min float64) {
		x := r.row(id)
		v := 0.0
		if x != nil {
			v = get(x)
		}
		goal(what, fmt.Sprintf(">= %.2f", min), "x", v, x != nil && v > 0, v >= min)
	}
	vsB := func(x *Row) float64 { return x.VsBatched }
	vs1 := func(x *Row) float64 { return x.VsOneQueue }
	rowGoal("trivial plugin vs batched reader", "udp/luafw-trivial/q1", vsB, 0.75)
	rowGoal("realistic config vs batched reader", "udp/luafw-realistic/q1", vsB, 0.50)
	rowGoal("trivial plugin, 2 queues vs 1", "udp/luafw-trivial/q2", vs1, 1.6)
	rowGoal("realistic config, 2 queues vs 1", "udp/luafw-realistic/q2", vs1, 1.6)
	vsK := func(x *Row) float64 { return x.VsKernel }
	rowGoal("matches, unmatched flood vs kernel alone", "udp/luafw-matched/q1", vsK, 0.95)
	// What luafw's rules cost beyond conntrack, which its ct-state matches
	// need and which the kernel-alone row does not pay.
	rowGoal("matches, unmatched flood vs kernel+conntrack", "udp/luafw-matched/q1", func(x *Row) float64 { return x.VsKernelCT }, 0.95)
	cpuGoals(r, goal)
	rowGoal("TCP bulk with offload vs kernel", "tcp/luafw-offload", vsK, 0.80)
	clusterGoals(r, goal)
	sweepGoals(r, goal)
	if x := r.row("rate/luafw-trivial/q1"); x != nil {
		goal(fmt.Sprintf("no loss at %d pkt/s (trivial plugin)", x.TargetPPS), "0", "packets lost", float64(x.Lost), true, x.Lost <= 0)
	} else {
		goal("no loss at a rate the batched reader sustains", "0", "packets lost", 0, false, false)
	}
}

// print writes the tables.
func (r *Results) print(w io.Writer) {
	fmt.Fprintf(w, "\nUDP flood, %v s of %v-byte datagrams client -> router -> server (one run, one lab)\n",
		r.Settings["flood_seconds"], r.Settings["payload_bytes"])
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "setup\tq\tsent/s\trecv/s\tloss %\tq full\tsock drop\tconsumer CPU %\tmachine CPU %\tvs kernel\tvs kernel+ct\tvs plain\tvs batched\tvs 1 queue\trecv/s per core\tper core vs batched\tCPU µs/pkt\tCPU/pkt vs batched\tCPU/pkt vs 1 queue\tqueued/pkt\tper queue\t")
	for _, x := range r.Rows {
		if x.Kind != "udp-flood" && x.Kind != "udp-rate" {
			continue
		}
		setup := x.Setup
		if x.Kind == "udp-rate" {
			setup = fmt.Sprintf("%s @ %d/s", x.Setup, x.TargetPPS)
		}
		perCore := "-"
		if x.PerCore > 0 {
			perCore = fmt.Sprintf("%.0f", x.PerCore)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%.2f\t%d\t%d\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", setup, queues(x.Queues), x.SentPPS, x.RecvPPS, x.LossPct, x.QueueFull, x.SocketDropped,
			cpuCell(&x), x.MachineCPU, ratioCell(x.VsKernel), ratioCell(x.VsKernelCT), ratioCell(x.VsPlain), ratioCell(x.VsBatched), ratioCell(x.VsOneQueue), perCore, ratioCell(x.PerCoreVsBatch),
			ratioCell(x.CPUPerPacket), ratioCell(x.CPUVsBatched), ratioCell(x.CPUVsOneQueue), ratioCell(x.PacketsPerPass), perQueue(x.PerQueue))
	}
	tw.Flush()
	printQueueScaling(w, r)
	printSweep(w, r)

	fmt.Fprintf(w, "\nTCP bulk, iperf3 client -> server, %v s\n", r.Settings["tcp_seconds"])
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "setup\tGbit/s\tvs kernel\tvs kernel+ct\tretransmits\tpackets queued\tconsumer CPU %\t")
	for _, x := range r.Rows {
		if x.Kind == "tcp-bulk" {
			fmt.Fprintf(tw, "%s\t%.2f\t%s\t%s\t%d\t%d\t%s\t\n", x.Setup, x.Gbps, ratioCell(x.VsKernel), ratioCell(x.VsKernelCT), x.Retrans, x.TCPQueued, cpuCell(&x))
		}
	}
	tw.Flush()

	fmt.Fprintf(w, "\nUDP echo round trips (sequential, %v each)\n", r.Settings["rtt_count"])
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "setup\tp50 µs\tp99 µs\tadded p50 µs\tadded p99 µs\tlost\tqueue passes\t")
	for _, x := range r.Rows {
		if x.Kind == "udp-rtt" {
			fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t%d\t\n", x.Setup, x.P50us, x.P99us, x.AddedP50, x.AddedP99, x.RTTLost, x.Queued)
		}
	}
	tw.Flush()

	fmt.Fprintln(w, "\ngoals")
	for _, g := range r.Goals {
		mark := "✓"
		switch {
		case !g.Known:
			mark = "?"
		case !g.Met:
			mark = "✗"
		}
		got := fmt.Sprintf("%.2f %s", g.Got, g.Unit)
		if !g.Known {
			got = "not measured"
		}
		fmt.Fprintf(w, "  %s %-45s want %-8s got %s\n", mark, g.What, g.Want, got)
	}
	fmt.Fprintf(w, "\nsegments per configuration:\n")
	for _, name := range []string{"trivial-q1", "realistic-q1", "layered-q1"} {
		fmt.Fprintf(w, "  %-13s %s\n", name, strings.Join(r.Configs[name], "; "))
	}
	fmt.Fprintf(w, "\nload average before %s, after %s; %d cores; %s; run took %.0f s\n", r.LoadBefore, r.LoadAfter, r.CPUs, r.Kernel, r.Seconds)
	for _, e := range r.Errors {
		fmt.Fprintf(w, "error: %s\n", e)
	}
}

func queues(n int) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprint(n)
}

func cpuCell(x *Row) string {
	if x.ConsumerCPU == 0 && x.Queues == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", x.ConsumerCPU)
}

func ratioCell(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", v)
}

func perQueue(v []uint64) string {
	if len(v) < 2 {
		return "-"
	}
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, "/")
}

// write writes the results as indented JSON.
func (r *Results) write(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	return nil
}

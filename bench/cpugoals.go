package main

import (
	"fmt"
	"io"
	"strings"
)

// The CPU goals compare consumer CPU per delivered packet, not packets per
// second: on a small machine the sender, which also does most of the
// kernel's forwarding work, limits the flood before the consumer does.
var cpuGoalRows = []struct {
	what, id, vs string
	max          float64
}{
	{"trivial plugin vs batched reader: CPU/packet", "udp/luafw-trivial/q1", "batched", 1.2},
	{"realistic config vs batched reader: CPU/packet", "udp/luafw-realistic/q1", "batched", 1.7},
	{"trivial plugin, 2 queues vs 1: CPU/packet", "udp/luafw-trivial/q2", "one queue", 1.1},
	{"realistic config, 2 queues vs 1: CPU/packet", "udp/luafw-realistic/q2", "one queue", 1.1},
}

// cpuGoals checks the CPU-per-packet goals (lower is better).
func cpuGoals(r *Results, goal func(what, want, unit string, got float64, known, met bool)) {
	for _, g := range cpuGoalRows {
		v := 0.0
		if x := r.row(g.id); x != nil {
			v = x.CPUVsBatched
			if g.vs == "one queue" {
				v = x.CPUVsOneQueue
			}
		}
		goal(g.what, fmt.Sprintf("<= %.2f", g.max), "x", v, v > 0, v <= g.max)
	}
}

// printQueueScaling prints, for each two-queue flood row, its consumer CPU
// per packet beside the same setup's on one queue.
func printQueueScaling(w io.Writer, r *Results) {
	first := true
	for _, x := range r.Rows {
		if x.Kind != "udp-flood" || x.Queues != 2 || x.CPUPerPacket == 0 {
			continue
		}
		one := r.row(strings.TrimSuffix(x.ID, "q2") + "q1")
		if one == nil || one.CPUPerPacket == 0 {
			continue
		}
		if first {
			fmt.Fprintln(w, "\nCPU/packet q2 vs q1 (consumer CPU / received packets; flat scaling is 1.00)")
			first = false
		}
		fmt.Fprintf(w, "  %-55s q1 %6.2f µs  q2 %6.2f µs  q2/q1 %.2f\n", x.Setup, one.CPUPerPacket, x.CPUPerPacket, x.CPUVsOneQueue)
	}
}

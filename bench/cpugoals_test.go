package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestCPUPerPacketRatios: finish sets the CPU-per-packet ratios against the
// batched reader and against one queue, the goals read them, and print
// shows the two-queue comparison.
func TestCPUPerPacketRatios(t *testing.T) {
	r := &Results{Settings: map[string]any{}, Configs: map[string][]string{}}
	r.Rows = []Row{
		{ID: "udp/batched/q1", Kind: "udp-flood", Setup: "batched", Queues: 1, CPUPerPacket: 8},
		{ID: "udp/batched/q2", Kind: "udp-flood", Setup: "batched, 2 sockets", Queues: 2, CPUPerPacket: 8.8},
		{ID: "udp/luafw-trivial/q1", Kind: "udp-flood", Setup: "luafw, trivial plugin", Queues: 1, CPUPerPacket: 9.2},
		{ID: "udp/luafw-trivial/q2", Kind: "udp-flood", Setup: "luafw, trivial plugin", Queues: 2, CPUPerPacket: 11.5},
	}
	r.finish()
	checks := []struct {
		id        string
		got, want float64
	}{
		{"trivial q1 vs batched", r.row("udp/luafw-trivial/q1").CPUVsBatched, 1.15},
		{"trivial q2 vs batched q2", r.row("udp/luafw-trivial/q2").CPUVsBatched, 1.307},
		{"trivial q2 vs q1", r.row("udp/luafw-trivial/q2").CPUVsOneQueue, 1.25},
		{"batched q2 vs q1", r.row("udp/batched/q2").CPUVsOneQueue, 1.1},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.id, c.got, c.want)
		}
	}
	met := map[string]bool{}
	for _, g := range r.Goals {
		if g.Known {
			met[g.What] = g.Met
		}
	}
	if !met["trivial plugin vs batched reader: CPU/packet"] {
		t.Errorf("1.15x against a 1.2x goal not met: %+v", r.Goals)
	}
	if v, ok := met["trivial plugin, 2 queues vs 1: CPU/packet"]; !ok || v {
		t.Errorf("1.25x against a 1.1x goal: known %v, met %v", ok, v)
	}
	var out bytes.Buffer
	r.print(&out)
	want := "luafw, trivial plugin"
	i := strings.Index(out.String(), "CPU/packet q2 vs q1")
	if i < 0 || !strings.Contains(out.String()[i:], want) || !strings.Contains(out.String()[i:], "q2/q1 1.25") {
		t.Errorf("no two-queue comparison for %q in:\n%s", want, out.String())
	}
}

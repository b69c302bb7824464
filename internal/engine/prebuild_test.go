package engine

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

// A reload that waits for PrebuildWorkers is in force at each worker's
// next packet, even for a plugin whose top level takes 100 ms; without it
// the next packet still runs the previous generation (what the daemon's
// reload answered too early before).
func TestPrebuildWorkersSwitchAtNextPacket(t *testing.T) {
	e := New(Options{Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(e.Close)
	slow := func(mark int) PluginSpec {
		return src("slow", `local t0 = time.now() while time.now() - t0 < 0.1 do end
fw.register{hook = "input", fn = function(pkt) pkt:set_mark(`+itoa(mark)+`) end}`)
	}
	mustLoad(t, e, slow(1))
	var ws []*Worker
	for range 3 {
		w := e.NewWorker()
		t.Cleanup(w.Close)
		w.SetBackgroundBuilds(true)
		ws = append(ws, w)
	}
	pkt := func() *Packet { return &Packet{Hook: Input, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, 0)} }
	for _, w := range ws {
		if d := w.Run(pkt()); d.Mark != 1 {
			t.Fatalf("mark %d, want 1", d.Mark)
		}
	}

	// Without the prebuild: the worker's next packet runs generation 1.
	mustLoad(t, e, slow(2))
	if d := ws[0].Run(pkt()); d.Mark != 1 {
		t.Fatalf("right after a load without prebuild: mark %d, want 1 (the 100 ms build is not done)", d.Mark)
	}

	// With it: every worker runs the new generation at its next packet,
	// the one that had started its own build too.
	mustLoad(t, e, slow(3))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.PrebuildWorkers(ctx); err != nil {
		t.Fatal(err)
	}
	for i, w := range ws {
		if d := w.Run(pkt()); d.Mark != 3 {
			t.Errorf("worker %d after PrebuildWorkers: mark %d, want 3", i, d.Mark)
		}
	}
	// Nothing is left to build: a second call returns at once.
	if err := e.PrebuildWorkers(ctx); err != nil {
		t.Fatal(err)
	}
}

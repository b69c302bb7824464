package daemon

import (
	"testing"

	"github.com/luafw/luafw/internal/engine"
)

func TestPlanCutsAtStages(t *testing.T) {
	plan := Plan(map[engine.Hook][]int{
		engine.Prerouting: {-300, -250, -150, -100, 0, 0, 10},
		engine.Forward:    {0},
		engine.Output:     {-400, 200},
	})
	type want struct {
		hook   engine.Hook
		lo, hi int
		prio   int32
		after  string
		last   bool
	}
	wants := []want{
		// -300 (raw) and -250 run between raw and conntrack: one segment,
		// diverted just after the raw stage.
		{engine.Prerouting, -300, -249, -299, "raw", false},
		// -150 is mangle: cut at conntrack (-200) and at mangle itself.
		{engine.Prerouting, -150, -149, -149, "mangle", false},
		{engine.Prerouting, -100, -99, -99, "dstnat", false},
		{engine.Prerouting, 0, 11, 1, "filter", true},
		{engine.Forward, 0, 1, 1, "filter", true},
		{engine.Output, -400, -399, -399, "defrag", false},
		{engine.Output, 200, 201, 200, "srcnat", true},
	}
	if len(plan) != len(wants) {
		t.Fatalf("plan has %d segments, want %d:\n%s", len(plan), len(wants), Describe(plan))
	}
	for i, w := range wants {
		s := plan[i]
		if s.Hook != w.hook || s.Lo != w.lo || s.Hi != w.hi || s.ChainPriority != w.prio || s.After != w.after || s.Last != w.last {
			t.Errorf("segment %d = %+v, want %+v", i, s, w)
		}
	}
}

func TestPlanEmpty(t *testing.T) {
	if p := Plan(nil); len(p) != 0 {
		t.Fatalf("plan of nothing: %v", p)
	}
}

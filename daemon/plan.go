// Package daemon is the luafw service: it works out where the loaded
// chains must be diverted, installs the diversion rules, serves the queues
// with engine workers, carries out the decisions (verdicts, marks,
// conntrack updates), reloads on request, reports metrics, answers its
// control socket (package daemon/control: reload, status) and tells a
// service manager how it is doing (sd_notify: ready, reloading, stopping,
// and watchdog pings only while every queue reader progresses). The engine
// (host) decides; the nfq/... packages talk to the kernel; this package joins them.
package daemon

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/luafw/luafw/internal/engine"
)

// stages are netfilter's built-in stage priorities. A callback at priority
// p runs after every stage at or below p and before every stage above it,
// so a chain is cut into segments wherever a stage falls between two
// callbacks.
var stages = [...]struct {
	prio int
	name string
}{
	{engine.PriorityDefrag, "defrag"}, {engine.PriorityRaw, "raw"}, {engine.PriorityConntrack, "conntrack"},
	{engine.PriorityMangle, "mangle"}, {engine.PriorityDstNAT, "dstnat"}, {engine.PriorityFilter, "filter"},
	{engine.PrioritySecurity, "security"}, {engine.PrioritySrcNAT, "srcnat"},
}

// Segment is one diversion: the callbacks of one hook between two stages,
// served from their own queues.
type Segment struct {
	Hook engine.Hook
	// Lo and Hi bound the callback priorities the segment runs: [Lo, Hi).
	Lo, Hi int
	// ChainPriority is the priority of the nftables base chain that diverts
	// it: the first callback's priority, one above it when that equals a
	// stage's (so the stage, registered or not before us, runs first).
	ChainPriority int32
	// After names the stage the segment follows ("" before all).
	After string
	// Last reports whether no later segment exists on the hook.
	Last bool
}

// Key identifies a segment across reloads.
func (s Segment) Key() string { return fmt.Sprintf("%s@%d", s.Hook, s.ChainPriority) }

func (s Segment) String() string {
	after := s.After
	if after == "" {
		after = "start"
	}
	return fmt.Sprintf("%s priority %d (after %s; callbacks %d..%d)", s.Hook, s.ChainPriority, after, s.Lo, s.Hi-1)
}

// Plan cuts each hook's callback priorities into segments.
func Plan(prios map[engine.Hook][]int) []Segment {
	var out []Segment
	for _, h := range engine.Hooks() {
		ps := slices.Clone(prios[h])
		slices.Sort(ps)
		ps = slices.Compact(ps)
		first := len(out)
		for i := 0; i < len(ps); {
			j := i
			for j+1 < len(ps) && !stageBetween(ps[j], ps[j+1]) {
				j++
			}
			out = append(out, segment(h, ps[i], ps[j]))
			i = j + 1
		}
		if len(out) > first {
			out[len(out)-1].Last = true
		}
	}
	return out
}

// stageBetween reports whether a stage s has a < s <= b.
func stageBetween(a, b int) bool {
	for _, s := range stages {
		if a < s.prio && s.prio <= b {
			return true
		}
	}
	return false
}

func segment(h engine.Hook, lo, hi int) Segment {
	s := Segment{Hook: h, Lo: lo, Hi: hi + 1, ChainPriority: int32(lo)}
	if hi == math.MaxInt {
		s.Hi = hi
	}
	for _, st := range stages {
		if st.prio <= lo {
			s.After = st.name
		}
		if st.prio == lo && lo < math.MaxInt32 {
			s.ChainPriority = int32(lo + 1)
		}
	}
	if lo < math.MinInt32 {
		s.ChainPriority = math.MinInt32
	}
	if lo > math.MaxInt32 {
		s.ChainPriority = math.MaxInt32
	}
	return s
}

// Describe renders a plan for people: one line per segment.
func Describe(plan []Segment) string {
	var b strings.Builder
	for _, s := range plan {
		fmt.Fprintf(&b, "%s\n", s)
	}
	return b.String()
}

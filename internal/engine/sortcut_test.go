package engine

import (
	"testing"
	"time"
)

const sortSetup = `local t = {}
for i = 1, 65535 do t[i] = (i * 7919) % 1000003 end
`

func sortTime(t *testing.T) time.Duration {
	e, _ := newTestEngine(t)
	spec := src("sort", sortSetup+`fw.register{hook = "input", fn = function(pkt)
	local c = {} for i = 1, #t do c[i] = t[i] end
	local t0 = os.clock() table.sort(c) local t1 = os.clock()
	if t1 - t0 > 0 then error(string.format("%.6f", t1 - t0)) end
end}`)
	spec.Budget = 5 * time.Second
	mustLoad(t, e, spec)
	best := time.Hour
	for i := 0; i < 5; i++ {
		t0 := time.Now()
		e.Process(&Packet{Hook: Input, Data: tcpPkt(t, "10.1.1.1", "10.0.0.2", 5, 1, 0)})
		best = min(best, time.Since(t0))
	}
	t.Logf("one sort (and a copy): %v", best)
	return best
}

// A table.sort cut off by the budget leaves the table as it was, so every
// packet that runs it is cut again: a hostile packet costs its verdict and
// never makes the next one cheap. (The write-back of the sorted copy was
// metered: a cut in it left a sorted prefix, and a later sort of the nearly
// sorted table finished within the budget.) Budgets between 1 and 8 ms put
// the cut at every point of the sort.
func TestSortCutLeavesTable(t *testing.T) {
	if raceEnabled {
		t.Skip("budgets near a sort's own time: the race detector slows it unevenly")
	}
	// How long a whole sort takes here, then budgets that cut it near its
	// end (in the write-back, before the fix).
	full := sortTime(t)
	var budgets []time.Duration
	for f := 10; f <= 100; f += 6 {
		budgets = append(budgets, full*time.Duration(f)/100)
	}
	for _, budget := range budgets {
		e, _ := newTestEngine(t)
		spec := src("sort", `local t = {}
for i = 1, 65535 do t[i] = (i * 7919) % 1000003 end
local first = t[1]
fw.register{hook = "input", fn = function(pkt)
	if pkt.dport == 1 then
		table.sort(t)
		return fw.ACCEPT
	end
	if t[1] ~= first then return fw.REJECT end
	return fw.DROP
end}`)
		spec.Budget = budget
		mustLoad(t, e, spec)
		finished := 0
		for i := 0; i < 60; i++ {
			d := e.Process(&Packet{Hook: Input, Data: tcpPkt(t, "10.1.1.1", "10.0.0.2", 5, 1, 0)})
			if d.Errors == 0 {
				finished++
			}
			if d := e.Process(&Packet{Hook: Input, Data: tcpPkt(t, "10.1.1.1", "10.0.0.2", 5, 2, 0)}); d.Verdict == Reject {
				if finished == 0 {
					t.Fatalf("budget %v: a sort cut off changed the table", budget)
				}
				break // it finished once: sorted for good
			}
		}
		t.Logf("budget %v: %d of the sorts finished", budget, finished)
	}
}

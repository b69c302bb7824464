package engine

import (
	"regexp"
	"testing"
	"time"
)

// A budget cut names where the callback was running.
// The loop is lines 3-5: a cut may land on its "while", its body or the
// jump back at its "end".
func TestBudgetCutNamesTheLine(t *testing.T) {
	e, logs := newTestEngine(t)
	spec := src("spin", "fw.register{hook=\"input\", fn=function(pkt)\n  local n = 0\n  while true do\n    n = n + 1\n  end\nend}")
	spec.Budget = 2 * time.Millisecond
	spec.OnError = Drop
	mustLoad(t, e, spec)
	if d := e.Process(&Packet{Hook: Input, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, 0)}); d.Verdict != Drop {
		t.Fatalf("verdict %v", d.Verdict)
	}
	if !regexp.MustCompile(`exceeded its budget of 2ms \(at spin\.lua:[345]\)`).MatchString(logs.String()) {
		t.Fatalf("the cut does not name the loop's line: %s", logs.String())
	}
}

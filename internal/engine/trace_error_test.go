package engine

import (
	"strings"
	"testing"
	"time"
)

// A filter that fails leaves its error for the trace to show: the Lua
// error with its place, or the budget it ran over.
func TestTraceLastFilterError(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e, src("guard", tracePlugins))
	for _, tc := range []struct{ expr, want string }{
		{`error("no such thing as " .. pkt.dport)`, "no such thing as 23"},
		{`(function() while true do end end)()`, "ran over its budget of 5ms"},
	} {
		tap, err := e.Trace(TraceFilter{Expr: tc.expr, Budget: 5 * time.Millisecond}, 16)
		if err != nil {
			t.Fatal(err)
		}
		if got := tap.LastFilterError(); got != "" {
			t.Errorf("%s: error %q before any packet", tc.expr, got)
		}
		w := e.NewWorker()
		w.Run(&Packet{Hook: Forward, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 4000, 23, 0)})
		if got := tap.LastFilterError(); !strings.Contains(got, tc.want) || tap.FilterErrors() != 1 {
			t.Errorf("%s: error %q after %d failures, want it to say %q", tc.expr, got, tap.FilterErrors(), tc.want)
		}
		w.Close()
		tap.Close()
	}
}

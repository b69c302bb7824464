package engine

import (
	"testing"
)

// BenchmarkTrace is BenchmarkChain/lua-1 with a tap attached: one whose Go
// filter matches no packet (the cost of being attached), one matching every
// packet with a reader that drains (the cost per traced packet), and one
// with a Lua filter that matches every packet.
func BenchmarkTrace(b *testing.B) {
	for _, tc := range []struct {
		name string
		f    TraceFilter
	}{
		{"attached-nomatch", TraceFilter{Port: 1}},
		{"match-all", TraceFilter{}},
		{"match-all-lua-filter", TraceFilter{Expr: `pkt.proto == "tcp"`}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e := benchEngine(b)
			if err := e.Load([]PluginSpec{src("p0", `fw.register{hook="forward", fn=function(pkt) return fw.ACCEPT end}`)}); err != nil {
				b.Fatal(err)
			}
			tap, err := e.Trace(tc.f, 1024)
			if err != nil {
				b.Fatal(err)
			}
			defer tap.Close()
			done := make(chan struct{})
			defer close(done)
			go func() {
				for {
					select {
					case <-tap.C():
					case <-done:
						return
					}
				}
			}()
			runBench(b, e, benchPacket(b), Accept)
			b.ReportMetric(float64(tap.Lost()), "lost")
		})
	}
}

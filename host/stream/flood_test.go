package stream

import (
	"runtime"
	"testing"
)

// TestHalfOpenFlood: 50,000 flows that each send a SYN and the first 600
// bytes of a hello, never the rest. The table stays within its limits,
// drops the flows idle longest and counts them; a flow of the last few
// hundred is still whole.
func TestHalfOpenFlood(t *testing.T) {
	tb := NewTable(Limits{}, nil)
	data := make([]byte, 600)
	const n = 50000
	for i := range n {
		k := key
		k.SPort, k.DPort = uint16(i), uint16(i>>16)
		tb.Add(k, Segment{Seq: 1, Flags: FlagSYN}, int64(i))
		tb.Add(k, Segment{Seq: 2, Payload: data}, int64(i))
		if st := tb.Stats(); st.Flows > DefaultFlows || st.Bytes > DefaultMemory {
			t.Fatalf("after %d flows: %+v", i+1, st)
		}
	}
	st := tb.Stats()
	if st.Evicted != uint64(n-st.Flows) || st.Flows == 0 {
		t.Fatalf("stats %+v", st)
	}
	k := key
	k.SPort, k.DPort = uint16(n-1), uint16((n-1)>>16)
	if f := tb.Get(k); f == nil || f.Contiguous() != 600 {
		t.Fatal("the newest flow was dropped")
	}
	t.Logf("%d half-open flows: %+v", n, st)
}

// BenchmarkFlowMemory reports the heap a tracked flow takes: one that sent
// only its SYN, and one holding 1,400 bytes of a hello.
func BenchmarkFlowMemory(b *testing.B) {
	for _, c := range []struct {
		name string
		data int
	}{{"syn-only", 0}, {"1400-bytes", 1400}} {
		b.Run(c.name, func(b *testing.B) {
			const flows = 4000
			data := make([]byte, c.data)
			var before, after runtime.MemStats
			for range b.N {
				tb := NewTable(Limits{Flows: flows, Memory: 1 << 30}, nil)
				runtime.GC()
				runtime.ReadMemStats(&before)
				for i := range flows {
					k := key
					k.SPort = uint16(i)
					tb.Add(k, Segment{Seq: 1, Flags: FlagSYN}, 0)
					if c.data > 0 {
						tb.Add(k, Segment{Seq: 2, Payload: data}, 0)
					}
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				runtime.KeepAlive(tb)
			}
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/flows, "B/flow")
		})
	}
}

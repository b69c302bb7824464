package engine

import (
	"runtime"
	_ "strings"
	"testing"
	"time"

	"github.com/luafw/luafw/host/packet"
)

// Issue 18: every namespace bounded, every output bounded. These run
// hostile plugins and assert outcomes: log bytes per failure, heap,
// refusals with file:line, the per-packet budget's verdict and counts.

func forwardPkt(t testing.TB) *Packet {
	return &Packet{Hook: Forward, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1000, 80, packet.TCPSyn)}
}

// heapInUse is the Go heap in use after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// allocated is the bytes allocated so far (garbage included).
func allocated() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}

// TestTracebackTailCalls: a tail-recursive __call cut off by its budget
// used to build one traceback line per tail call after the cut (5.7 s and
// 899 MB for one call with a 1 s budget).
func TestTracebackTailCalls(t *testing.T) {
	cases := map[string]string{
		"__call": `local t = setmetatable({}, {__call = function(self, n) return self(n + 1) end})
			fw.register{hook="forward", fn=function() return t(1) end}`,
		"function": `local function f(n) return f(n + 1) end
			fw.register{hook="forward", fn=function() return f(1) end}`,
		"mutual": `local g
			local function f(n) return g(n + 1) end
			g = function(n) return f(n + 1) end
			fw.register{hook="forward", fn=function() return f(1) end}`,
	}
	for name, code := range cases {
		t.Run(name, func(t *testing.T) {
			e, buf := newTestEngine(t)
			spec := src("tail", code)
			spec.Budget = 200 * time.Millisecond
			spec.OnError = Drop
			mustLoad(t, e, spec)
			pkt := forwardPkt(t)
			e.Process(&Packet{Hook: Input, Data: pkt.Data}) // a worker, outside the measure
			a0 := allocated()
			t0 := time.Now()
			d := e.Process(pkt)
			took := time.Since(t0)
			alloc := allocated() - a0
			if d.Verdict != Drop || d.Errors != 1 {
				t.Errorf("verdict %v errors %d, want the on_error drop", d.Verdict, d.Errors)
			}
			if took > spec.Budget+150*time.Millisecond {
				t.Errorf("one call took %v with a budget of %v", took, spec.Budget)
			}
			if alloc > 64<<20 {
				t.Errorf("one call allocated %d MiB", alloc>>20)
			}
			t.Logf("%v, %d KiB allocated, log %d bytes", took, alloc>>10, len(buf.String()))
		})
	}
}

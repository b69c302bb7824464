package engine

import (
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/luafw/luafw/host/packet"
)

// Engine benchmarks: the cost of one packet through a chain, in ns, allocs
// and packets per second on one core. The "go" rows are the baseline: the
// same chain of native Go callbacks, measured in the same run.

func benchEngine(b *testing.B) *Engine {
	e := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	b.Cleanup(e.Close)
	return e
}

func runBench(b *testing.B, e *Engine, p *Packet, want Verdict) {
	w := e.NewWorker()
	defer w.Close()
	if d := w.Run(p); d.Verdict != want || d.Errors != 0 {
		b.Fatalf("verdict %v errors %d, want %v", d.Verdict, d.Errors, want)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w.Run(p)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
}

func benchPacket(b *testing.B) *Packet {
	data, err := packet.Build(packet.Spec{Src: netip.MustParseAddr("10.1.2.3"), Dst: netip.MustParseAddr("10.9.8.7"),
		Proto: packet.ProtoTCP, SrcPort: 40000, DstPort: 443, TCPFlags: packet.TCPAck, Payload: make([]byte, 64)})
	if err != nil {
		b.Fatal(err)
	}
	return &Packet{Hook: Forward, Data: data, CTState: CTEstablished}
}

func BenchmarkChain(b *testing.B) {
	for _, n := range []int{1, 5, 20} {
		b.Run(fmt.Sprintf("lua-%d", n), func(b *testing.B) {
			e := benchEngine(b)
			var specs []PluginSpec
			for i := 0; i < n; i++ {
				specs = append(specs, src(fmt.Sprintf("p%d", i), `fw.register{hook="forward", fn=function(pkt) return fw.ACCEPT end}`))
			}
			if err := e.Load(specs); err != nil {
				b.Fatal(err)
			}
			runBench(b, e, benchPacket(b), Accept)
		})
		b.Run(fmt.Sprintf("go-%d", n), func(b *testing.B) {
			e := benchEngine(b)
			for i := 0; i < n; i++ {
				e.RegisterFunc(Forward, 0, fmt.Sprintf("g%d", i), func(c *Ctx) Verdict { return Accept })
			}
			runBench(b, e, benchPacket(b), Accept)
		})
	}
}

// BenchmarkRealistic reads five fields and looks the source up in a
// 10,000-entry net.set.
func BenchmarkRealistic(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	var list strings.Builder
	list.WriteString("local bad = net.set{")
	for i := 0; i < 10000; i++ {
		fmt.Fprintf(&list, "%q,", fmt.Sprintf("%d.%d.%d.0/24", 11+rng.IntN(200), rng.IntN(256), rng.IntN(256)))
	}
	list.WriteString("}\n")
	code := list.String() + `
fw.register{hook="forward", fn=function(pkt)
	if pkt.proto ~= "tcp" then return end
	if pkt.dport == 23 or pkt.sport == 23 then return fw.DROP end
	if pkt.tcp.syn and pkt.ct.state ~= "new" then return fw.DROP end
	if bad:contains(pkt.src) then return fw.DROP end
end}`
	b.Run("lua", func(b *testing.B) {
		e := benchEngine(b)
		if err := e.Load([]PluginSpec{src("realistic", code)}); err != nil {
			b.Fatal(err)
		}
		runBench(b, e, benchPacket(b), Accept)
	})
	b.Run("go", func(b *testing.B) {
		e := benchEngine(b)
		e.RegisterFunc(Forward, 0, "realistic", func(c *Ctx) Verdict {
			p := c.Parsed()
			if p.Proto != packet.ProtoTCP {
				return Accept
			}
			if p.DstPort == 23 || p.SrcPort == 23 {
				return Drop
			}
			if p.TCPFlags&packet.TCPSyn != 0 && c.CTState() != CTNew {
				return Drop
			}
			_ = p.Src.String() // what pkt.src costs the Lua side
			return Accept
		})
		runBench(b, e, benchPacket(b), Accept)
	})
}

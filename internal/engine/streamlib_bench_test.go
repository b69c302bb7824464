package engine

import (
	"net/netip"
	"testing"

	"github.com/luafw/luafw/host/packet"
	"github.com/luafw/luafw/host/tlshello"
)

// Stream benchmarks: what the sni plugin costs a flow it does not inspect
// (another port: its match keeps the packet from it), a flow whose hello
// it has judged (application data), and a first flight it reassembles.

func sniBench(b *testing.B) (*Engine, *Worker) {
	e := benchEngine(b)
	if err := e.Load([]PluginSpec{{File: "../../plugins/sni.lua", Options: map[string]any{"names": []any{"blocked.example"}, "log": false}}}); err != nil {
		b.Fatal(err)
	}
	w := e.NewWorker()
	b.Cleanup(w.Close)
	return e, w
}

func tcpPacket(b *testing.B, sport, dport uint16, flags uint8, seq uint32, payload []byte) *Packet {
	data, err := packet.Build(packet.Spec{Src: netip.MustParseAddr("10.1.2.3"), Dst: netip.MustParseAddr("10.9.8.7"),
		Proto: packet.ProtoTCP, SrcPort: sport, DstPort: dport, TCPFlags: flags, Seq: seq, Payload: payload})
	if err != nil {
		b.Fatal(err)
	}
	return &Packet{Hook: Forward, Data: data, CTState: CTEstablished}
}

func BenchmarkSNI(b *testing.B) {
	b.Run("other-port", func(b *testing.B) {
		e, _ := sniBench(b)
		runBench(b, e, tcpPacket(b, 40000, 80, packet.TCPAck|packet.TCPPsh, 1, make([]byte, 64)), Accept)
	})
	b.Run("judged-flow-data", func(b *testing.B) {
		e, w := sniBench(b)
		hello := tlshello.Build(tlshello.Spec{SNI: "www.example.com", TLS13: true})
		w.Run(tcpPacket(b, 40000, 443, packet.TCPSyn, 0, nil))
		w.Run(tcpPacket(b, 40000, 443, packet.TCPAck|packet.TCPPsh, 1, hello))
		runBench(b, e, tcpPacket(b, 40000, 443, packet.TCPAck|packet.TCPPsh, 1+uint32(len(hello))+5000, make([]byte, 64)), Accept)
	})
	b.Run("first-flight-syn-2-segments", func(b *testing.B) {
		_, w := sniBench(b)
		hello := tlshello.Build(tlshello.Spec{SNI: "www.example.com", TLS13: true, GREASE: true, Padding: 1600, PadFirst: true})
		const ports = 1024
		var pk [ports][3]*Packet
		for i := range pk {
			sport := uint16(20000 + i)
			pk[i] = [3]*Packet{tcpPacket(b, sport, 443, packet.TCPSyn, 0, nil),
				tcpPacket(b, sport, 443, packet.TCPAck|packet.TCPPsh, 1, hello[:1400]),
				tcpPacket(b, sport, 443, packet.TCPAck|packet.TCPPsh, 1401, hello[1400:])}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			for _, p := range pk[i%ports] {
				w.Run(p)
			}
		}
		b.ReportMetric(float64(3*b.N)/b.Elapsed().Seconds(), "pkts/s")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(3*b.N), "ns/pkt")
	})
}

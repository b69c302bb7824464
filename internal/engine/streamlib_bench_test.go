package engine

import (
	"net/netip"
	"testing"

	"github.com/luafw/luafw/host/packet"
	"github.com/luafw/luafw/host/quic"
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
		_, w := sniBench(b)
		hello := tlshello.Build(tlshello.Spec{SNI: "www.example.com", TLS13: true})
		w.Run(tcpPacket(b, 40000, 443, packet.TCPSyn, 0, nil))
		w.Run(tcpPacket(b, 40000, 443, packet.TCPAck|packet.TCPPsh, 1, hello))
		runWorker(b, w, tcpPacket(b, 40000, 443, packet.TCPAck|packet.TCPPsh, 1+uint32(len(hello))+5000, make([]byte, 64)))
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

// BenchmarkSNIQUIC: one client Initial (1,200 bytes, the hello in one
// CRYPTO frame) of a new connection per packet: keys derived, header
// protection removed, the packet opened, the hello read and judged.
func BenchmarkSNIQUIC(b *testing.B) {
	_, w := sniBench(b)
	rec := tlshello.Build(tlshello.Spec{SNI: "www.example.com", TLS13: true, ALPN: []string{"h3"}})
	const ports = 1024
	var pk [ports]*Packet
	for i := range pk {
		initial, err := quic.Seal(quic.V1, []byte{byte(i >> 8), byte(i), 3, 4, 5, 6, 7, 8}, nil, 0, quic.CryptoFrame(0, rec[5:]), 1200)
		if err != nil {
			b.Fatal(err)
		}
		data, err := packet.Build(packet.Spec{Src: netip.MustParseAddr("10.1.2.3"), Dst: netip.MustParseAddr("10.9.8.7"),
			Proto: packet.ProtoUDP, SrcPort: uint16(20000 + i), DstPort: 443, Payload: initial})
		if err != nil {
			b.Fatal(err)
		}
		pk[i] = &Packet{Hook: Forward, Data: data}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w.Run(pk[i%ports])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
}

// runWorker is runBench on a worker whose plugin states hold earlier
// packets' flows.
func runWorker(b *testing.B, w *Worker, p *Packet) {
	if d := w.Run(p); d.Verdict != Accept || d.Errors != 0 {
		b.Fatalf("verdict %v errors %d", d.Verdict, d.Errors)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w.Run(p)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
}

package daemon

import (
	"net/netip"
	"testing"

	"github.com/luafw/luafw/host/packet"
	"github.com/luafw/luafw/internal/engine"
)

// TestStreamMetrics: a flood of half-open flows past a plugin's
// stream.limits{flows} shows in luafw_stream_events_total as evictions.
func TestStreamMetrics(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"luafw.yaml": "plugins:\n  - file: hello.lua\n",
		"hello.lua": `stream.limits{flows = 10}
fw.register{hook="forward", fn=function(pkt) stream.tls_hello(pkt) end}`,
	}
	d := newTestDaemon(t, dir, files)
	w := d.eng.NewWorker()
	defer w.Close()
	for i := range 25 {
		for _, flags := range []uint8{packet.TCPSyn, packet.TCPAck | packet.TCPPsh} {
			b, err := packet.Build(packet.Spec{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("198.51.100.1"),
				Proto: packet.ProtoTCP, SrcPort: uint16(30000 + i), DstPort: 443, TCPFlags: flags, Seq: 100 + uint32(flags&packet.TCPAck)/16, Payload: []byte{22, 3, 1}})
			if err != nil {
				t.Fatal(err)
			}
			w.Run(&engine.Packet{Hook: engine.Forward, Data: b})
		}
	}
	_, fams := scrapeFamilies(t, d)
	got := map[string]float64{}
	for _, m := range fams["luafw_stream_events_total"].GetMetric() {
		if hasLabels(m, map[string]string{"plugin": "hello"}) {
			for _, l := range m.GetLabel() {
				if l.GetName() == "event" {
					got[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	if got["evicted"] != 15 || got["segments"] != 25 {
		t.Fatalf("luafw_stream_events_total{plugin=hello}: %v, want 15 evicted, 25 segments", got)
	}
}

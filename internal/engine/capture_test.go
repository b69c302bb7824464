package engine

import (
	"testing"

	"github.com/luafw/luafw/host/packet"
)

// TestPktCapture: pkt:capture() marks the decision with the first plugin
// that asked, whatever the verdict, and the mark does not carry over to the
// next packet.
func TestPktCapture(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e,
		src("watch", `fw.register{hook="input", fn=function(pkt) if pkt.dport == 23 then pkt:capture() end end}`),
		src("later", `fw.register{hook="input", priority=10, fn=function(pkt) if pkt.dport >= 23 then pkt:capture() end end}`))
	w := e.NewWorker()
	defer w.Close()
	for _, c := range []struct {
		dport uint16
		want  string
	}{{23, "watch"}, {22, ""}, {24, "later"}} {
		d := w.Run(&Packet{Hook: Input, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1000, c.dport, packet.TCPSyn)})
		if d.CaptureBy != c.want || d.Verdict != Accept {
			t.Errorf("port %d: captured by %q (verdict %v), want %q", c.dport, d.CaptureBy, d.Verdict, c.want)
		}
	}
}

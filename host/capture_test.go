package host

import (
	"testing"

	"github.com/luafw/luafw/host/packet"
)

// TestPktCapture: pkt:capture() marks the decision with the plugin that
// asked, whatever the verdict, and the mark does not leak to the next packet.
func TestPktCapture(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e,
		src("watch", `fw.register{hook="input", fn=function(pkt) if pkt.dport == 23 then pkt:capture() end end}`),
		src("later", `fw.register{hook="input", priority=10, fn=function(pkt) pkt:capture() return fw.ACCEPT end}`))
	w := e.NewWorker()
	defer w.Close()
	d := w.Run(&Packet{Hook: Input, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1000, 23, packet.TCPSyn)})
	if d.CaptureBy != "watch" || d.Verdict != Accept {
		t.Fatalf("telnet: captured by %q (verdict %v), want the first asker, watch", d.CaptureBy, d.Verdict)
	}
	e2, _ := newTestEngine(t)
	mustLoad(t, e2, src("watch", `fw.register{hook="input", fn=function(pkt) if pkt.dport == 23 then pkt:capture() end end}`))
	w2 := e2.NewWorker()
	defer w2.Close()
	if d := w2.Run(&Packet{Hook: Input, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1000, 23, packet.TCPSyn)}); d.CaptureBy != "watch" {
		t.Fatalf("telnet: %q", d.CaptureBy)
	}
	if d := w2.Run(&Packet{Hook: Input, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1000, 22, packet.TCPSyn)}); d.CaptureBy != "" {
		t.Fatalf("ssh after telnet: captured by %q, want none", d.CaptureBy)
	}
}

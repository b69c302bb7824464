package engine

import (
	"encoding/binary"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/luafw/luafw/host/packet"
)

func decodeOK(t *testing.T, b []byte) *packet.Parsed {
	t.Helper()
	p := new(packet.Parsed)
	p.Decode(b)
	if p.Err != "" || p.Truncated || !packet.VerifyChecksums(p, b) {
		t.Fatalf("bad packet %s (checksums ok %v)", p, packet.VerifyChecksums(p, b))
	}
	return p
}

func tcpSeg(t *testing.T, src, dst string, flags uint8, seq, ack uint32, payload string) []byte {
	t.Helper()
	b, err := packet.Build(packet.Spec{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: packet.ProtoTCP,
		SrcPort: 40000, DstPort: 443, TCPFlags: flags, Seq: seq, Ack: ack, Payload: []byte(payload)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReplyReset: resets go to both ends with the sequence numbers each end
// expects; a SYN gets one RST|ACK back.
func TestReplyReset(t *testing.T) {
	e, logs := newTestEngine(t)
	mustLoad(t, e, src("rst", `fw.register{hook="forward", fn=function(pkt)
		assert(pkt:reply_reset())
		return fw.DROP
	end}`))
	for _, a := range [][2]string{{"10.0.0.1", "10.0.0.2"}, {"2001:db8::1", "2001:db8::2"}} {
		d := e.Process(&Packet{Hook: Forward, Data: tcpSeg(t, a[0], a[1], packet.TCPAck|packet.TCPPsh, 1000, 5000, "hello")})
		if d.Errors != 0 || len(d.Injected) != 3 {
			t.Fatalf("errors %d, %d injected: %s", d.Errors, len(d.Injected), logs)
		}
		type want struct {
			src   string
			seq   uint32
			flags uint8
		}
		for i, w := range []want{{a[1], 5000, packet.TCPRst}, {a[0], 1000, packet.TCPRst}, {a[0], 1005, packet.TCPRst}} {
			b := d.Injected[i].Data
			p := decodeOK(t, b)
			if p.Src.String() != w.src || p.TCPFlags != w.flags || binary.BigEndian.Uint32(b[p.L4Off+4:]) != w.seq {
				t.Errorf("reset %d: %s seq %d, want from %s seq %d", i, p, binary.BigEndian.Uint32(b[p.L4Off+4:]), w.src, w.seq)
			}
		}
		d = e.Process(&Packet{Hook: Forward, Data: tcpSeg(t, a[0], a[1], packet.TCPSyn, 77, 0, "")})
		if len(d.Injected) != 1 {
			t.Fatalf("SYN: %d injected", len(d.Injected))
		}
		b := d.Injected[0].Data
		p := decodeOK(t, b)
		if p.TCPFlags != packet.TCPRst|packet.TCPAck || binary.BigEndian.Uint32(b[p.L4Off+8:]) != 78 || p.DstPort != 40000 {
			t.Errorf("SYN reset: %s ack %d", p, binary.BigEndian.Uint32(b[p.L4Off+8:]))
		}
	}
}

// TestReplyICMPAndUDP: an ICMP error quotes the packet back to its sender;
// a UDP answer swaps addresses and ports.
func TestReplyICMPAndUDP(t *testing.T) {
	e, logs := newTestEngine(t)
	mustLoad(t, e, src("r", `fw.register{hook="input", fn=function(pkt)
		if pkt.family == 4 then assert(pkt:reply_icmp(3, 13)) else assert(pkt:reply_icmp(1, 1)) end
		assert(pkt:reply_udp("answer"))
		local ok, why = pkt:reply_reset()
		assert(not ok and why:find("TCP"), why)
		return fw.DROP
	end}`))
	for _, a := range [][2]string{{"10.0.0.1", "10.0.0.2"}, {"2001:db8::1", "2001:db8::2"}} {
		in := udpPkt(t, a[0], a[1], 1234, 53, []byte("question"))
		d := e.Process(&Packet{Hook: Input, Data: in})
		if d.Errors != 0 || len(d.Injected) != 2 {
			t.Fatalf("errors %d, %d injected: %s", d.Errors, len(d.Injected), logs)
		}
		icmp := decodeOK(t, d.Injected[0].Data)
		if icmp.Dst.String() != a[0] || icmp.Src.String() != a[1] {
			t.Errorf("icmp %s", icmp)
		}
		if quoted := icmp.Payload(d.Injected[0].Data); !strings.HasPrefix(string(in), string(quoted[:28])) {
			t.Errorf("icmp does not quote the packet")
		}
		udp := decodeOK(t, d.Injected[1].Data)
		if udp.SrcPort != 53 || udp.DstPort != 1234 || udp.Dst.String() != a[0] || string(udp.Payload(d.Injected[1].Data)) != "answer" {
			t.Errorf("udp reply %s", udp)
		}
	}
}

// TestSendAndRateLimit: fw.send takes built packets with a mark; a script
// sending in a loop is refused once its bucket is empty, and gets tokens
// back as the clock moves.
func TestSendAndRateLimit(t *testing.T) {
	now := time.Unix(1000, 0)
	e := New(Options{Logger: slog.New(slog.DiscardHandler), Clock: func() time.Time { return now }, InjectRate: 2, InjectBurst: 5})
	t.Cleanup(e.Close)
	mustLoad(t, e, src("flood", `fw.register{hook="output", fn=function(pkt)
		local sent, why = 0, nil
		for i = 1, 100 do
			local ok, reason = fw.send(packet.udp{src="10.9.9.9", dst=pkt.dst, sport=1, dport=i, payload="x"}, {mark=7})
			if not ok then why = reason break end
			sent = sent + 1
		end
		assert(why and why:find("rate limit"), why)
		return fw.ACCEPT
	end}`))
	d := e.Process(&Packet{Hook: Output, Data: udpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, nil)})
	if len(d.Injected) != 5 || d.Injected[0].Mark != 7 || d.Injected[0].Plugin != "flood" {
		t.Fatalf("first packet: %d injected (want the burst of 5)", len(d.Injected))
	}
	decodeOK(t, d.Injected[4].Data)
	d = e.Process(&Packet{Hook: Output, Data: udpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, nil)})
	if len(d.Injected) != 0 {
		t.Fatalf("second packet at the same time: %d injected, want 0", len(d.Injected))
	}
	now = now.Add(time.Second)
	d = e.Process(&Packet{Hook: Output, Data: udpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, nil)})
	if len(d.Injected) != 2 {
		t.Fatalf("a second later: %d injected, want 2 (rate 2/s)", len(d.Injected))
	}
}

// TestSendRefusals: garbage is refused with a reason; fw.send at load time
// raises.
func TestSendRefusals(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e, src("bad", `fw.register{hook="output", fn=function(pkt)
		local ok, why = fw.send("not a packet")
		assert(not ok and why:find("complete"), why)
		ok, why = fw.send(pkt:bytes(0, 20))
		assert(not ok, "a cut packet was taken")
		return fw.DROP
	end}`))
	if d := e.Process(&Packet{Hook: Output, Data: udpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, []byte("abc"))}); d.Errors != 0 || d.Verdict != Drop {
		t.Fatalf("errors %d verdict %v", d.Errors, d.Verdict)
	}
	err := e.Load([]PluginSpec{src("early", `fw.send(packet.udp{src="10.0.0.1", dst="10.0.0.2"})`)})
	if err == nil || !strings.Contains(err.Error(), "inside a packet callback") {
		t.Fatalf("load-time send: %v", err)
	}
}

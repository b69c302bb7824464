package engine

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/luafw/luafw/host/packet"
)

// TestRewritesFromLua: a script rewrites the payload, TTL and DSCP; a later
// callback (Go) sees the rewritten packet, the decision carries it with valid
// checksums, and the handed-in bytes are untouched.
func TestRewritesFromLua(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e, src("rw", `
fw.register{hook="forward", fn=function(pkt)
	assert(not pkt.rewritten)
	assert(pkt:set_payload("HELLO, rewritten world"))
	assert(pkt:set_ttl(7))
	assert(pkt:set_dscp(46))
	assert(pkt:set_ecn(1))
	assert(pkt.rewritten and pkt.dscp == 46 and pkt.ecn == 1 and pkt.ttl == 7)
	assert(pkt.payload == "HELLO, rewritten world", pkt.payload)
end}
fw.register{hook="forward", priority=10, fn=function(pkt)
	assert(pkt.payload == "HELLO, rewritten world" and pkt.len == #pkt:bytes())
end}`))
	var seen string
	if err := e.RegisterFunc(Forward, 20, "go", func(c *Ctx) Verdict {
		seen = string(c.Parsed().Payload(c.Data()))
		if err := c.SetPayload([]byte("go was here")); err != nil {
			t.Error(err)
		}
		return Accept
	}); err != nil {
		t.Fatal(err)
	}
	for _, addrs := range [][2]string{{"10.0.0.1", "10.0.0.2"}, {"2001:db8::1", "2001:db8::2"}} {
		orig := udpPkt(t, addrs[0], addrs[1], 1000, 53, []byte("hello"))
		keep := bytes.Clone(orig)
		d := e.Process(&Packet{Hook: Forward, Data: orig})
		if d.Errors != 0 || d.Data == nil {
			t.Fatalf("%s: errors %d, data %x", addrs[0], d.Errors, d.Data)
		}
		if !bytes.Equal(orig, keep) {
			t.Errorf("%s: the handed-in packet was written", addrs[0])
		}
		if seen != "HELLO, rewritten world" {
			t.Errorf("%s: Go callback saw %q", addrs[0], seen)
		}
		want, _ := packet.Build(packet.Spec{Src: netip.MustParseAddr(addrs[0]), Dst: netip.MustParseAddr(addrs[1]),
			Proto: packet.ProtoUDP, SrcPort: 1000, DstPort: 53, TTL: 7, Payload: []byte("go was here")})
		packet.SetTrafficClass(&packet.Parsed{Family: want[0] >> 4}, want, 46<<2|1)
		var p packet.Parsed
		p.Decode(want)
		packet.FixChecksums(&p, want)
		if !bytes.Equal(d.Data, want) {
			t.Errorf("%s:\n got %x\nwant %x", addrs[0], d.Data, want)
		}
	}
}

// TestNoRewriteNoCopy: a chain that only reads leaves Decision.Data nil.
func TestNoRewriteNoCopy(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e, src("ro", `fw.register{hook="forward", fn=function(pkt)
		local ok, why = pkt:clamp_mss(1000)  -- not a SYN: refused without a copy
		assert(ok == false and why:find("SYN"), why)
	end}`))
	d := e.Process(&Packet{Hook: Forward, Data: udpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, nil)})
	if d.Errors != 0 || d.Data != nil {
		t.Fatalf("errors %d data %x", d.Errors, d.Data)
	}
}

// TestTCPPayloadLengthRefused: a TCP payload of another length is refused
// with a reason that says why; the same length is taken.
func TestTCPPayloadLengthRefused(t *testing.T) {
	e, logs := newTestEngine(t)
	mustLoad(t, e, src("tcp", `fw.register{hook="forward", fn=function(pkt)
		local ok, why = pkt:set_payload("longer than hello")
		assert(not ok and why:find("sequence numbers"), why)
		assert(not pkt.rewritten)
		assert(pkt:set_payload("HELLO"))
		local ok2, why2 = pkt:write(pkt.len, "x")
		assert(not ok2 and why2:find("outside"), why2)
		return fw.DROP
	end}`))
	d := e.Process(&Packet{Hook: Forward, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, packet.TCPAck)})
	if d.Errors != 0 || d.Verdict != Drop {
		t.Fatalf("errors %d verdict %v: %s", d.Errors, d.Verdict, logs)
	}
	var p packet.Parsed
	p.Decode(d.Data)
	if string(p.Payload(d.Data)) != "HELLO" || !packet.VerifyChecksums(&p, d.Data) {
		t.Errorf("payload %q, checksums ok %v", p.Payload(d.Data), packet.VerifyChecksums(&p, d.Data))
	}
}

// TestWriteRaw: pkt:write changes raw bytes and the checksums follow.
func TestWriteRaw(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e, src("w", `fw.register{hook="forward", fn=function(pkt)
		assert(pkt:write(pkt.len - 2, "ZZ"))
		assert(pkt.payload == "helZZ", pkt.payload)
	end}`))
	for _, a := range []string{"10.0.0.1", "2001:db8::1"} {
		b := "10.0.0.2"
		if a[0] == '2' {
			b = "2001:db8::2"
		}
		d := e.Process(&Packet{Hook: Forward, Data: tcpPkt(t, a, b, 1, 2, packet.TCPAck)})
		var p packet.Parsed
		p.Decode(d.Data)
		if d.Errors != 0 || !packet.VerifyChecksums(&p, d.Data) {
			t.Fatalf("%s: errors %d, checksums ok %v", a, d.Errors, packet.VerifyChecksums(&p, d.Data))
		}
	}
}

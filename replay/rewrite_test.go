package replay

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/luafw/luafw/host/packet"
	"github.com/luafw/luafw/pcap"
)

// TestReplayRewritesAndInjected: the JSON marks rewritten packets and counts
// injected ones; the output capture holds the packets as they leave, the
// injected ones included and the dropped ones left out.
func TestReplayRewritesAndInjected(t *testing.T) {
	e := newEngine(t, `
fw.register{hook="forward", fn=function(pkt)
	if pkt.dport == 7 then assert(pkt:set_ttl(9)) end
	if pkt.dport == 8 then assert(pkt:reply_reset()) return fw.DROP end
end}
fw.register{hook="postrouting", fn=function(pkt)
	assert(pkt.dport ~= 7 or pkt.ttl == 9, "postrouting sees the rewritten packet")
end}`)
	in := capture(t, []pk{
		{"10.0.0.1", "10.0.0.2", 1000, 7, packet.ProtoUDP, 0},
		{"10.0.0.1", "10.0.0.2", 1001, 8, packet.ProtoTCP, packet.TCPSyn},
		{"10.0.0.1", "10.0.0.2", 1002, 9, packet.ProtoUDP, 0},
	})
	var out, js bytes.Buffer
	bw := bufio.NewWriter(&out)
	w, err := pcap.NewWriter(bw, pcap.LinkTypeRaw)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := Run(context.Background(), e, in, Options{Path: Paths()["forward"], Out: w}, &js)
	if err != nil || sum.Errors != 0 {
		t.Fatalf("run: %v, %d errors", err, sum.Errors)
	}
	bw.Flush()
	var res []Result
	for dec := json.NewDecoder(&js); dec.More(); {
		var r Result
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		res = append(res, r)
	}
	if len(res) != 3 || !res[0].Rewritten || res[1].Rewritten || res[1].Injected != 1 || res[1].Verdict != "drop" || res[2].Rewritten {
		t.Fatalf("results %+v", res)
	}
	rd, err := pcap.NewReader(&out)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		p, err := rd.Next()
		if err != nil {
			break
		}
		var pp packet.Parsed
		pp.Decode(p.Data)
		if !packet.VerifyChecksums(&pp, p.Data) {
			t.Errorf("packet %d: bad checksums", p.N)
		}
		if len(got) == 0 && pp.TTL != 9 {
			t.Errorf("the rewritten packet left with TTL %d, want 9", pp.TTL)
		}
		got = append(got, pp.String())
	}
	want := []string{"udp 10.0.0.1:1000 > 10.0.0.2:7 len=28", "tcp 10.0.0.2:8 > 10.0.0.1:1001 [R.] len=40", "udp 10.0.0.1:1002 > 10.0.0.2:9 len=28"}
	if len(got) != len(want) {
		t.Fatalf("out capture %q", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("out %d: %q, want %q", i, got[i], want[i])
		}
	}
}

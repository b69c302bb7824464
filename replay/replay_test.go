package replay

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/luafw/luafw/host/packet"
	"github.com/luafw/luafw/internal/engine"
	"github.com/luafw/luafw/pcap"
)

type pk struct {
	src, dst     string
	sport, dport uint16
	proto        uint8
	flags        uint8
}

func capture(t *testing.T, pkts []pk) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	w, err := pcap.NewWriter(&buf, pcap.LinkTypeRaw)
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Unix(1700000000, 0)
	for i, p := range pkts {
		b, err := packet.Build(packet.Spec{Src: netip.MustParseAddr(p.src), Dst: netip.MustParseAddr(p.dst),
			Proto: p.proto, SrcPort: p.sport, DstPort: p.dport, TCPFlags: p.flags})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WritePacket(ts.Add(time.Duration(i)*time.Millisecond), b); err != nil {
			t.Fatal(err)
		}
	}
	return &buf
}

func newEngine(t *testing.T, plugins ...string) *engine.Engine {
	t.Helper()
	e := engine.New(engine.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(e.Close)
	var specs []engine.PluginSpec
	for i, code := range plugins {
		name := string(rune('a' + i))
		specs = append(specs, engine.PluginSpec{Name: name, File: name + ".lua", Source: []byte(code), Budget: time.Second})
	}
	if err := e.Load(specs); err != nil {
		t.Fatal(err)
	}
	return e
}

func results(t *testing.T, out *bytes.Buffer) []map[string]any {
	t.Helper()
	var res []map[string]any
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		res = append(res, m)
	}
	return res
}

const (
	tcp = packet.ProtoTCP
	udp = packet.ProtoUDP
	syn = packet.TCPSyn
	ack = packet.TCPAck
)

func TestReplayConntrackAndMarks(t *testing.T) {
	e := newEngine(t,
		// prerouting: remember the state and tag ssh
		`fw.register{hook="prerouting", priority="mangle", fn=function(pkt)
			pkt:tag(pkt.ct.state)
			if pkt.dport == 22 or pkt.sport == 22 then pkt:tag("ssh") end
		end}`,
		// forward: classify new ssh connections with a ct mark, drop telnet
		`fw.register{hook="forward", fn=function(pkt)
			if pkt.dport == 23 then return fw.DROP end
			if pkt:tagged("ssh") and pkt.ct.state == "new" then pkt.ct:set_mark(0x22) end
			if pkt.ct.mark == 0x22 then pkt:set_mark(7) end
		end}`,
		// postrouting: reject udp to 9
		`fw.register{hook="postrouting", fn=function(pkt) if pkt.proto == "udp" and pkt.dport == 9 then return fw.REJECT end end}`,
	)
	in := capture(t, []pk{
		{"10.0.0.1", "10.0.1.1", 40000, 22, tcp, syn},       // 1 new ssh
		{"10.0.1.1", "10.0.0.1", 22, 40000, tcp, syn | ack}, // 2 reply: established
		{"10.0.0.1", "10.0.1.1", 40000, 22, tcp, ack},       // 3 established
		{"10.0.0.1", "10.0.1.1", 40001, 23, tcp, syn},       // 4 telnet: drop
		{"10.0.0.1", "10.0.1.1", 5000, 9, udp, 0},           // 5 reject at postrouting
		{"10.0.0.1", "10.0.1.1", 5000, 53, udp, 0},          // 6 plain accept
	})
	var out bytes.Buffer
	sum, err := Run(context.Background(), e, in, Options{Path: Paths()["forward"]}, &out)
	if err != nil {
		t.Fatal(err)
	}
	r := results(t, &out)
	if len(r) != 6 {
		t.Fatalf("%d lines, want 6:\n%s", len(r), out.String())
	}
	check := func(i int, field string, want any) {
		t.Helper()
		if got := r[i][field]; got != want {
			t.Errorf("packet %d: %s = %v, want %v", i+1, field, got, want)
		}
	}
	check(0, "n", 1.0)
	check(0, "verdict", "accept")
	check(0, "ct_state", "new")
	check(0, "ct_mark", float64(0x22))
	check(0, "mark", 7.0)
	check(0, "by", nil)
	check(0, "hook", "postrouting")
	if tags := r[0]["tags"].([]any); len(tags) != 2 || tags[0] != "new" || tags[1] != "ssh" {
		t.Errorf("packet 1 tags = %v", tags)
	}
	check(1, "ct_state", "established")
	check(1, "ct_mark", float64(0x22)) // the mark persisted on the flow
	check(1, "mark", 7.0)
	check(2, "ct_state", "established")
	check(3, "verdict", "drop")
	check(3, "hook", "forward")
	check(3, "by", "b")
	check(3, "src", "10.0.0.1") // the packet can be found by its addresses and ports
	check(3, "dst", "10.0.1.1")
	check(3, "proto", "tcp")
	check(3, "sport", 40001.0)
	check(3, "dport", 23.0)
	check(4, "proto", "udp")
	check(4, "dport", 9.0)
	check(4, "verdict", "reject")
	check(4, "hook", "postrouting")
	check(4, "by", "c")
	check(5, "verdict", "accept")
	check(5, "ct_mark", 0.0)
	if sum.Packets != 6 || sum.Verdicts["accept"] != 4 || sum.Verdicts["drop"] != 1 || sum.Verdicts["reject"] != 1 {
		t.Errorf("summary %+v", sum)
	}
	if !strings.Contains(sum.String(), "6 packets") {
		t.Errorf("summary text %q", sum.String())
	}
}

func TestReplayPathsAndHooks(t *testing.T) {
	e := newEngine(t,
		`fw.register{hook={"prerouting","input","forward","output","postrouting"}, fn=function(pkt) pkt:tag(pkt.hook) end}`)
	in := []pk{{"2001:db8::1", "2001:db8::2", 1, 2, udp, 0}}
	for path, want := range map[string]string{"forward": "prerouting,forward,postrouting", "in": "prerouting,input", "out": "output,postrouting"} {
		var out bytes.Buffer
		if _, err := Run(context.Background(), e, capture(t, in), Options{Path: Paths()[path]}, &out); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, tg := range results(t, &out)[0]["tags"].([]any) {
			got = append(got, tg.(string))
		}
		if strings.Join(got, ",") != want {
			t.Errorf("path %s ran %v, want %s", path, got, want)
		}
	}
	var out bytes.Buffer
	if _, err := Run(context.Background(), e, capture(t, in), Options{Path: Paths()["forward"], Hooks: []engine.Hook{engine.Forward}}, &out); err != nil {
		t.Fatal(err)
	}
	if tags := results(t, &out)[0]["tags"].([]any); len(tags) != 1 || tags[0] != "forward" {
		t.Errorf("--hooks forward ran %v", tags)
	}
}

func TestReplaySkipsNonIPAndRejectsGarbage(t *testing.T) {
	e := newEngine(t, `fw.register{hook="forward", fn=function(pkt) end}`)
	var buf bytes.Buffer
	w, _ := pcap.NewWriter(&buf, pcap.LinkTypeEthernet)
	arp := make([]byte, 42)
	arp[12], arp[13] = 0x08, 0x06
	w.WritePacket(time.Unix(1, 0), arp)
	var out bytes.Buffer
	sum, err := Run(context.Background(), e, &buf, Options{Path: Paths()["forward"]}, &out)
	if err != nil || sum.Skipped != 1 || !strings.Contains(out.String(), `"skipped"`) {
		t.Fatalf("err %v skipped %d out %s", err, sum.Skipped, out.String())
	}
	if _, err := Run(context.Background(), e, strings.NewReader("not a capture at all"), Options{Path: Paths()["forward"]}, &out); err == nil {
		t.Fatal("garbage accepted")
	}
}

func TestReplayClockFollowsCapture(t *testing.T) {
	clk := &Clock{}
	e := engine.New(engine.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Clock: clk.Now})
	t.Cleanup(e.Close)
	// One new connection per second is allowed; the capture's packets are
	// 1 ms apart, so the second is over the limit — whatever the wall clock.
	if err := e.Load([]engine.PluginSpec{{Name: "rl", File: "rl.lua", Budget: time.Second, Source: []byte(`
		local b = state.bucket("rl", {rate = 1, burst = 1})
		fw.register{hook = "forward", fn = function(pkt)
			if not b:take(pkt.src) then return fw.DROP end
			pkt:tag(tostring(math.floor(time.now())))
		end}`)}}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	in := capture(t, []pk{{"10.0.0.1", "10.0.1.1", 1, 2, udp, 0}, {"10.0.0.1", "10.0.1.1", 1, 2, udp, 0}})
	if _, err := Run(context.Background(), e, in, Options{Path: Paths()["forward"], Clock: clk}, &out); err != nil {
		t.Fatal(err)
	}
	r := results(t, &out)
	if r[0]["verdict"] != "accept" || r[1]["verdict"] != "drop" {
		t.Fatalf("verdicts %v, %v: the bucket did not follow the capture's clock", r[0]["verdict"], r[1]["verdict"])
	}
	if tags := r[0]["tags"].([]any); len(tags) != 1 || tags[0] != "1700000000" {
		t.Fatalf("time.now() in the script = %v, want the capture's 1700000000", tags)
	}
}

// TestReplayMatches: matches apply in replay, "first" by the tracker's
// packet count (both directions).
func TestReplayMatches(t *testing.T) {
	e := newEngine(t, `fw.register{hook="forward", match={proto="tcp", dport=22, first=2}, fn=function(pkt) return fw.DROP end}`)
	in := capture(t, []pk{
		{"10.0.0.1", "10.0.1.1", 40000, 22, tcp, syn},       // 1: packet 1 of the flow
		{"10.0.1.1", "10.0.0.1", 22, 40000, tcp, syn | ack}, // 2: dport 40000, not admitted
		{"10.0.0.1", "10.0.1.1", 40000, 22, tcp, ack},       // 3: packet 3: beyond first
		{"10.0.0.1", "10.0.1.1", 5000, 22, udp, 0},          // 4: udp
	})
	var out bytes.Buffer
	if _, err := Run(context.Background(), e, in, Options{Path: Paths()["forward"]}, &out); err != nil {
		t.Fatal(err)
	}
	var got []any
	for _, r := range results(t, &out) {
		got = append(got, r["verdict"])
	}
	if want := []any{"drop", "accept", "accept", "accept"}; !slices.Equal(got, want) {
		t.Fatalf("verdicts %v, want %v", got, want)
	}
}

// TestReplayTimersFollowCapture: timers run on the capture's time, between
// the packets they fall between, counted from the first packet.
func TestReplayTimersFollowCapture(t *testing.T) {
	clk := &Clock{}
	e := engine.New(engine.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Clock: clk.Now, ManualTimers: true})
	t.Cleanup(e.Close)
	if err := e.Load([]engine.PluginSpec{{Name: "tm", File: "tm.lua", Budget: time.Second, Source: []byte(`
		local open = state.map("tm.open")
		local ticks = state.counter("tm.ticks")
		fw.after(10, function() open:set("yes", true) end)
		fw.every(1, function() ticks:incr() end)
		fw.register{hook = "forward", fn = function(pkt)
			pkt:tag("ticks=" .. ticks:get())
			if not open:get("yes") then return fw.DROP end
		end}`)}}); err != nil {
		t.Fatal(err)
	}
	var in bytes.Buffer
	w, err := pcap.NewWriter(&in, pcap.LinkTypeRaw)
	if err != nil {
		t.Fatal(err)
	}
	b, err := packet.Build(packet.Spec{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.1.1"), Proto: udp, SrcPort: 1, DstPort: 2})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1700000000, 0)
	for _, at := range []time.Duration{0, 5 * time.Second, 12*time.Second + 500*time.Millisecond} {
		if err := w.WritePacket(t0.Add(at), b); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	if _, err := Run(context.Background(), e, &in, Options{Path: Paths()["forward"], Clock: clk}, &out); err != nil {
		t.Fatal(err)
	}
	r := results(t, &out)
	var got []string
	for _, res := range r {
		got = append(got, res["verdict"].(string)+" "+res["tags"].([]any)[0].(string))
	}
	want := []string{"drop ticks=0", "drop ticks=5", "accept ticks=12"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v: the timers did not follow the capture's clock", got, want)
	}
}

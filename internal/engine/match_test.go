package engine

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/luafw/luafw/host/packet"
)

// matchRuns loads a plugin whose only callback counts its calls (and
// drops), registered with the given match, and reports for each packet
// whether the callback ran.
func matchRuns(t *testing.T, match string, pkts []*Packet) []bool {
	t.Helper()
	e, _ := newTestEngine(t)
	mustLoad(t, e, src("m", `
local bad = net.set{"203.0.113.0/24", "2001:db8:bad::/48"}
fw.register{hook="forward", match=`+match+`, fn=function(pkt) return fw.DROP end}`))
	w := e.NewWorker()
	defer w.Close()
	out := make([]bool, len(pkts))
	for i, p := range pkts {
		out[i] = w.Run(p).Verdict == Drop
	}
	return out
}

func TestMatchAdmits(t *testing.T) {
	tcp := func(src string, sport, dport uint16, flags uint8) *Packet {
		dst := "10.0.0.2"
		if strings.Contains(src, ":") {
			dst = "2001:db8::2"
		}
		return &Packet{Hook: Forward, Data: tcpPkt(t, src, dst, sport, dport, flags)}
	}
	udp := func(dport uint16) *Packet {
		return &Packet{Hook: Forward, Data: udpPkt(t, "10.0.0.1", "10.0.0.2", 5000, dport, nil)}
	}
	with := func(p *Packet, f func(*Packet)) *Packet { f(p); return p }
	syn, ack := packet.TCPSyn, packet.TCPAck
	cases := []struct {
		match string
		pkts  []*Packet
		want  []bool
	}{
		{`{proto="udp"}`, []*Packet{udp(53), tcp("10.0.0.1", 1, 53, ack)}, []bool{true, false}},
		{`{proto={"udp", 6}}`, []*Packet{udp(53), tcp("10.0.0.1", 1, 53, ack)}, []bool{true, true}},
		{`{dport=53}`, []*Packet{udp(53), udp(54), tcp("10.0.0.1", 1, 53, ack)}, []bool{true, false, true}},
		{`{dport={22, "1000-2000"}}`, []*Packet{udp(22), udp(999), udp(1000), udp(2000), udp(2001)}, []bool{true, false, true, true, false}},
		{`{sport="1-1024", proto="tcp"}`, []*Packet{tcp("10.0.0.1", 80, 9, ack), tcp("10.0.0.1", 8080, 9, ack), udp(9)}, []bool{true, false, false}},
		{`{tcp_flags="syn,!ack"}`, []*Packet{tcp("10.0.0.1", 1, 2, syn), tcp("10.0.0.1", 1, 2, syn|ack), tcp("10.0.0.1", 1, 2, ack), udp(2)}, []bool{true, false, false, false}},
		{`{src="10.0.0.0/8"}`, []*Packet{tcp("10.9.9.9", 1, 2, ack), tcp("11.0.0.1", 1, 2, ack), tcp("2001:db8::1", 1, 2, ack)}, []bool{true, false, false}},
		{`{src=bad}`, []*Packet{tcp("203.0.113.7", 1, 2, ack), tcp("203.0.114.7", 1, 2, ack), tcp("2001:db8:bad::9", 1, 2, ack)}, []bool{true, false, true}},
		{`{dst={"10.0.0.2", "2001:db8::/32"}}`, []*Packet{tcp("10.0.0.1", 1, 2, ack), tcp("2001:db8::1", 1, 2, ack)}, []bool{true, true}},
		{`{ct_state={"new"}}`, []*Packet{
			with(udp(1), func(p *Packet) { p.CTState = CTNew }),
			with(udp(1), func(p *Packet) { p.CTState = CTEstablished }),
			udp(1), // not told: the callback decides
		}, []bool{true, false, true}},
		{`{first=2}`, []*Packet{
			with(udp(1), func(p *Packet) { p.CTPackets = 1 }),
			with(udp(1), func(p *Packet) { p.CTPackets = 2 }),
			with(udp(1), func(p *Packet) { p.CTPackets = 3 }),
			udp(1),
		}, []bool{true, true, false, true}},
		{`{iif={"eth0", "veth*"}}`, []*Packet{
			with(udp(1), func(p *Packet) { p.InDev = "eth0" }),
			with(udp(1), func(p *Packet) { p.InDev = "veth12" }),
			with(udp(1), func(p *Packet) { p.InDev = "eth1" }),
			udp(1),
		}, []bool{true, true, false, false}},
		{`{oif="wg0", proto="udp", dport=51820}`, []*Packet{
			with(udp(51820), func(p *Packet) { p.OutDev = "wg0" }),
			with(udp(51821), func(p *Packet) { p.OutDev = "wg0" }),
			with(udp(51820), func(p *Packet) { p.OutDev = "eth0" }),
		}, []bool{true, false, false}},
		{`{}`, []*Packet{udp(1), {Hook: Forward, Data: []byte{0x45}}}, []bool{true, true}},
		{`{proto="tcp"}`, []*Packet{{Hook: Forward, Data: []byte{0x45}}}, []bool{false}},
	}
	for _, tc := range cases {
		got := matchRuns(t, tc.match, tc.pkts)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("match %s: callback ran %v, want %v", tc.match, got, tc.want)
		}
	}
}

// TestMatchSkipsLua: packets a match refuses never enter Lua: a callback
// that would fail on every call costs them nothing.
func TestMatchSkipsLua(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e, src("m", `fw.register{hook="forward", match={proto="tcp"}, fn=function(pkt) error("boom") end}`))
	d := e.Process(&Packet{Hook: Forward, Data: udpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, nil)})
	if d.Errors != 0 || d.Verdict != Accept {
		t.Fatalf("udp packet: %+v, want accepted without running the tcp callback", d)
	}
	if d := e.Process(&Packet{Hook: Forward, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, packet.TCPAck)}); d.Errors != 1 {
		t.Fatalf("tcp packet: %+v, want the callback run (and failing)", d)
	}
}

func TestMatchLoadErrors(t *testing.T) {
	for _, tc := range []struct{ match, want string }{
		{`{porto="tcp"}`, `unknown field "porto"`},
		{`{proto="tcpp"}`, `unknown protocol`},
		{`{proto="icmp", dport=1}`, `ports with protocol icmp`},
		{`{dport="2000-1000"}`, `port range "2000-1000"`},
		{`{dport=70000}`, `port 70000`},
		{`{dport={}}`, `empty list`},
		{`{src="10.0.0.300/8"}`, `10.0.0.300`},
		{`{ct_state="neww"}`, `unknown conntrack state`},
		{`{tcp_flags="syn,ackk"}`, `unknown flag "ackk"`},
		{`{tcp_flags="syn", proto="udp"}`, `do not include tcp`},
		{`{first=0}`, `first must be a positive integer`},
		{`{iif="a/b"}`, `interface "a/b"`},
		{`"tcp"`, `match must be a table`},
	} {
		e, _ := newTestEngine(t)
		err := e.Load([]PluginSpec{src("bad", "\n\nfw.register{hook=\"input\", match="+tc.match+", fn=function() end}")})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "bad.lua:3: ") {
			t.Errorf("match %s: error %v, want bad.lua:3: ... %s", tc.match, err, tc.want)
		}
	}
}

func TestMatchStringAndChains(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e, src("m", `
fw.register{hook="input", match={proto="tcp", dport={22, "1000-2000"}, ct_state="new", tcp_flags="syn,!ack", first=3, src={"10.0.0.0/8"}, iif="eth*"}, fn=function() end}
fw.register{hook="input", fn=function() end}`))
	chains := e.Chains()
	if len(chains) != 2 {
		t.Fatalf("chains %+v", chains)
	}
	want := "proto=tcp dport=22,1000-2000 src=10.0.0.0/8 ct_state=new iif=eth* tcp_flags=syn,!ack first=3"
	if got := chains[0].Match.String(); got != want {
		t.Errorf("match text %q, want %q", got, want)
	}
	if got := chains[1].Match.String(); got != "-" {
		t.Errorf("no match: %q, want -", got)
	}
}

func TestGoCallbackMatch(t *testing.T) {
	e, _ := newTestEngine(t)
	ran := 0
	err := e.RegisterFuncMatch(Forward, 0, "g", Match{Protos: []uint8{packet.ProtoUDP}, DPorts: []PortRange{{53, 53}}},
		func(c *Ctx) Verdict { ran++; return Drop })
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range [][]byte{udpPkt(t, "10.0.0.1", "10.0.0.2", 1, 53, nil), udpPkt(t, "10.0.0.1", "10.0.0.2", 1, 54, nil),
		tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 53, packet.TCPAck)} {
		e.Process(&Packet{Hook: Forward, Data: p})
	}
	if ran != 1 {
		t.Fatalf("go callback ran %d times, want 1", ran)
	}
	if err := e.RegisterFuncMatch(Forward, 0, "bad", Match{Protos: []uint8{packet.ProtoICMP}, DPorts: []PortRange{{1, 1}}}, func(*Ctx) Verdict { return Accept }); err == nil {
		t.Fatal("a match with ports on icmp was accepted")
	}
}

// TestMatchAllocs: checking a match allocates nothing, admitted or not.
func TestMatchAllocs(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e, src("m", `
local s = net.set{"10.0.0.0/8", "192.0.2.0/24"}
fw.register{hook="forward", match={proto="tcp", dport="1-1000", src=s, iif="eth*", tcp_flags="!syn", first=10}, fn=function() end}`))
	w := e.NewWorker()
	defer w.Close()
	in := &Packet{Hook: Forward, InDev: "eth0", CTPackets: 3, Data: tcpPkt(t, "10.1.1.1", "10.0.0.2", 4000, 443, packet.TCPAck)}
	out := &Packet{Hook: Forward, InDev: "eth0", Data: tcpPkt(t, "11.1.1.1", "10.0.0.2", 4000, 443, packet.TCPAck)}
	for _, p := range []*Packet{in, out} {
		if n := testing.AllocsPerRun(100, func() { w.Run(p) }); n != 0 {
			t.Errorf("%d allocations per packet", int(n))
		}
	}
}

// BenchmarkMatch: a packet through one Lua callback whose match refuses it
// (the check in Go, no Lua) and admits it (the check, then the call).
func BenchmarkMatch(b *testing.B) {
	code := `fw.register{hook="forward", match={proto="tcp", dport={22, "8000-8100"}, ct_state="new"}, fn=function(pkt) return fw.ACCEPT end}`
	for _, c := range []struct {
		name  string
		dport uint16
	}{{"refused", 443}, {"admitted", 22}} {
		b.Run(c.name, func(b *testing.B) {
			e := benchEngine(b)
			if err := e.Load([]PluginSpec{src("m", code)}); err != nil {
				b.Fatal(err)
			}
			p := benchPacket(b)
			p.CTState = CTNew
			data, err := packet.Build(packet.Spec{Src: netip.MustParseAddr("10.1.2.3"), Dst: netip.MustParseAddr("10.9.8.7"),
				Proto: packet.ProtoTCP, SrcPort: 40000, DstPort: c.dport, TCPFlags: packet.TCPSyn})
			if err != nil {
				b.Fatal(err)
			}
			p.Data = data
			runBench(b, e, p, Accept)
		})
	}
}

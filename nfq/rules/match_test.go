package rules

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/luafw/luafw/netfilter"
	"github.com/luafw/luafw/nfq/internal/labtest"

	"github.com/luafw/luafw/tests/lab"
)

// matchGoldenSet has a diversion of each kind narrowed by matches.
func matchGoldenSet() Set {
	return Set{Table: "lfwm", Diversions: []Diversion{
		{Hook: netfilter.Input, Priority: 1, ByState: true, Queues: [netfilter.NumCTStates]QueueSet{{0, 1}, {1, 1}},
			Filter: Filter{InIfaces: []string{"eth0"}},
			Matches: []Match{
				{Protos: []uint8{6}, DPorts: []PortRange{{22, 22}}, CTStates: []netfilter.CTState{netfilter.CTNew}, TCPFlagsMask: 0x12, TCPFlags: 0x02},
				{DPorts: []PortRange{{53, 53}}},
				{DPorts: []PortRange{{53, 53}}}, // a duplicate: one rule
				{Protos: []uint8{17}, DPorts: []PortRange{{1000, 2000}, {3000, 3000}}, MaxPackets: 4,
					Src: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.0/24")}},
				{Src: []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}, SPorts: []PortRange{{1, 1023}}},
			}},
		{Hook: netfilter.Prerouting, Priority: -299, Queues: [netfilter.NumCTStates]QueueSet{{2, 1}},
			Matches: []Match{{Protos: []uint8{17}, CTStates: []netfilter.CTState{netfilter.CTNew}, MaxPackets: 2}}},
	}}
}

func TestMatchRulesText(t *testing.T) {
	text := matchGoldenSet().String()
	for _, want := range []string{
		// ip
		`iifname "eth0" meta l4proto tcp th dport 22 tcp flags & 0x12 == 0x02 ct state new jump div_input_1_ct`,
		`iifname "eth0" meta l4proto { tcp, udp, dccp, sctp, udplite } th dport 53 jump div_input_1_ct`,
		`iifname "eth0" meta l4proto udp th dport { 1000-2000, 3000 } ip saddr { 10.0.0.0/8, 192.0.2.0/24 } ct packets <= 4 jump div_input_1_ct`,
		// ip6
		`iifname "eth0" meta l4proto { tcp, udp, dccp, sctp, udplite } th sport 1-1023 ip6 saddr 2001:db8::/32 jump div_input_1_ct`,
		// Before conntrack the ct matches are left out (divert more).
		"meta l4proto udp jump div_prerouting_m299_q\n",
		`counter xt target NFQUEUE --queue-num 2 --queue-bypass comment "luafw div 1"`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("rules lack %q:\n%s", want, text)
		}
	}
	if n := strings.Count(text, "th dport 53 jump"); n != 2 { // once per family
		t.Errorf("the duplicate match made %d rules, want 2 (one per family):\n%s", n, text)
	}
	ip4, ip6, _ := strings.Cut(text, "table ip6")
	if strings.Contains(ip4, "2001:db8") || strings.Contains(ip6, "10.0.0.0/8") {
		t.Errorf("a match with addresses of one family appears in the other's table:\n%s", text)
	}
}

func TestMatchRulesRefused(t *testing.T) {
	for _, m := range []Match{
		{Protos: []uint8{1}, DPorts: []PortRange{{1, 1}}},
		{Protos: []uint8{17}, TCPFlagsMask: 2, TCPFlags: 2},
		{DPorts: []PortRange{{5, 4}}},
		{CTStates: []netfilter.CTState{9}},
		{InIfaces: []string{"a/b"}},
	} {
		rs := Set{Diversions: []Diversion{{Hook: netfilter.Input, Priority: 1, Queues: [netfilter.NumCTStates]QueueSet{{0, 1}}, Matches: []Match{m}}}}
		if _, err := rs.build(); err == nil {
			t.Errorf("match %+v was accepted", m)
		}
	}
}

// TestMatchRulesInstall: the kernel takes the rules and reads them back
// as meant, and a narrowed diversion counts only what its matches want.
func TestMatchRulesInstall(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := labtest.Context(t)
	installIn(t, ctx, l.Router, matchGoldenSet())
	out, err := l.Router.Run(ctx, "nft", "list", "table", "ip", "lfwm")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`iifname "eth0" tcp dport 22 tcp flags syn / syn,ack ct state new jump div_input_1_ct`,
		`iifname "eth0" udp dport { 1000-2000, 3000 } ip saddr { 10.0.0.0/8, 192.0.2.0/24 } ct packets <= 4 jump div_input_1_ct`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("nft list lacks %q:\n%s", want, out)
		}
	}

	srv, err := l.Server.ServeTCP(":0")
	if err != nil {
		t.Fatal(err)
	}
	sink, err := l.Server.ServeUDP(":0")
	if err != nil {
		t.Fatal(err)
	}
	installIn(t, ctx, l.Router, Set{Table: "lfwm2", Diversions: []Diversion{
		{Hook: netfilter.Forward, Priority: 1, ByState: true, Queues: [netfilter.NumCTStates]QueueSet{{10, 1}, {11, 1}},
			Matches: []Match{{Protos: []uint8{6}, DPorts: []PortRange{{srv.Port(), srv.Port()}}, CTStates: []netfilter.CTState{netfilter.CTNew}}}},
	}})
	// Unmatched: UDP, and TCP to another port. Without a reader the queue
	// rules let packets through (bypass), counting them.
	if _, err := l.Client.UDPFlood(ctx, netip.AddrPortFrom(l.Server.Addr4, sink.Port()).String(), 20, 16, 0); err != nil {
		t.Fatal(err)
	}
	if err := sink.WaitCount(ctx, 20); err != nil {
		t.Fatal(err)
	}
	if c := readCounters(t, ctx, l.Router, "lfwm2"); c["4/0/new"]+c["4/0/established"]+c["6/0/new"]+c["6/0/established"] != 0 {
		t.Fatalf("unmatched UDP was diverted: %v", c)
	}
	if res := l.Client.TCPConnect(ctx, netip.AddrPortFrom(l.Server.Addr4, srv.Port()).String(), 5*time.Second); res.Outcome != lab.Connected {
		t.Fatalf("connect: %v", res)
	}
	c := readCounters(t, ctx, l.Router, "lfwm2")
	if c["4/0/new"] != 1 || c["4/0/established"] != 0 {
		t.Fatalf("counters %v: want the SYN alone queued (new), no established packet", c)
	}
}

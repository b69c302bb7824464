package rules

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/luafw/luafw/netfilter"

	"github.com/google/nftables"
)

// goldenSet exercises every feature of the rule builder.
func goldenSet() Set {
	return Set{
		Table:           "lfw",
		ConnMarkOffload: 0x1,
		Diversions: []Diversion{
			{Hook: netfilter.Prerouting, Priority: -299, Queues: [netfilter.NumCTStates]QueueSet{{0, 1}},
				Filter: Filter{Protos: []uint8{1, 58}, InIfaces: []string{"eth0"}}},
			{Hook: netfilter.Forward, Priority: 1, ByState: true, Queues: [netfilter.NumCTStates]QueueSet{{1, 2}, {3, 1}, {4, 1}, {5, 1}},
				Filter: Filter{Protos: []uint8{17, 6, 6}, DPorts: []uint16{80, 53}, SPorts: []uint16{1024},
					InIfaces: []string{"veth*", "lan0"}, OutIfaces: []string{"wan*"},
					Src: []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24"), netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("fd00::/8")},
					Dst: []netip.Prefix{netip.MustParsePrefix("::ffff:203.0.113.7/128"), netip.MustParsePrefix("2001:db8::1/128")}}},
			{Hook: netfilter.Input, Priority: 1, ByState: true, Queues: [netfilter.NumCTStates]QueueSet{{6, 1}, {7, 1}, {7, 1}, {7, 1}, {7, 1}}},
			{Hook: netfilter.Postrouting, Priority: 101, Queues: [netfilter.NumCTStates]QueueSet{{8, 4}}, Filter: Filter{Dst: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}},
			// A second diversion of a hook: a tail chain clears the bits there.
			{Hook: netfilter.Forward, Priority: 101, Queues: [netfilter.NumCTStates]QueueSet{{12, 1}}},
		},
	}
}

const goldenText = `table ip lfw {
	chain div_prerouting_m299 {
		type filter hook prerouting priority -299; policy accept;
		meta mark & 0xc0000000 != 0 jump div_prerouting_m299_mark
		meta l4proto icmp iifname "eth0" jump div_prerouting_m299_q
	}

	chain div_prerouting_m299_q {
		ct state related ct status & confirmed == 0 accept
		ct mark & 0x00000001 == 0x00000001 accept
		counter xt target NFQUEUE --queue-num 0 --queue-bypass comment "luafw div 0"
	}

	chain div_prerouting_m299_mark {
		meta mark & 0xc0000000 == 0xc0000000 meta l4proto tcp reject with tcp reset
		meta mark & 0xc0000000 == 0xc0000000 reject with icmp type port-unreachable
		meta mark & 0x80000000 == 0x80000000 meta mark set meta mark & 0x3fffffff accept
		meta mark & 0xc0000000 != 0 meta mark set meta mark & 0x3fffffff
	}

	chain div_forward_1 {
		type filter hook forward priority 1; policy accept;
		meta mark & 0xc0000000 != 0 jump div_forward_1_mark
		meta l4proto { tcp, udp } th sport 1024 th dport { 53, 80 } iifname { "lan0", "veth*" } oifname "wan*" ip saddr { 10.0.0.0/8, 192.168.1.0/24 } ip daddr 203.0.113.7 jump div_forward_1_ct
	}

	chain div_forward_1_ct {
		ct state related ct status & confirmed == 0 accept
		ct mark & 0x00000001 == 0x00000001 accept
		ct state new counter xt target NFQUEUE --queue-balance 1:2 --queue-bypass comment "luafw div 1 new"
		ct state established counter xt target NFQUEUE --queue-num 3 --queue-bypass comment "luafw div 1 established"
		ct state related counter xt target NFQUEUE --queue-num 4 --queue-bypass comment "luafw div 1 related"
		ct state invalid counter xt target NFQUEUE --queue-num 5 --queue-bypass comment "luafw div 1 invalid"
	}

	chain div_forward_1_mark {
		meta mark & 0xc0000000 == 0xc0000000 meta l4proto tcp reject with tcp reset
		meta mark & 0xc0000000 == 0xc0000000 reject with icmp type port-unreachable
		meta mark & 0x80000000 == 0x80000000 accept
	}

	chain div_input_1 {
		type filter hook input priority 1; policy accept;
		meta mark & 0xc0000000 == 0xc0000000 meta l4proto tcp reject with tcp reset
		meta mark & 0xc0000000 == 0xc0000000 reject with icmp type port-unreachable
		meta mark & 0x80000000 == 0x80000000 meta mark set meta mark & 0x3fffffff accept
		meta mark & 0xc0000000 != 0 meta mark set meta mark & 0x3fffffff
		ct state related ct status & confirmed == 0 accept
		ct mark & 0x00000001 == 0x00000001 accept
		ct state new counter xt target NFQUEUE --queue-num 6 --queue-bypass comment "luafw div 2 new"
		ct state established counter xt target NFQUEUE --queue-num 7 --queue-bypass comment "luafw div 2 established"
		ct state related counter xt target NFQUEUE --queue-num 7 --queue-bypass comment "luafw div 2 related"
		ct state invalid counter xt target NFQUEUE --queue-num 7 --queue-bypass comment "luafw div 2 invalid"
		ct state untracked counter xt target NFQUEUE --queue-num 7 --queue-bypass comment "luafw div 2 untracked"
	}

	chain div_postrouting_101 {
		type filter hook postrouting priority 101; policy accept;
		meta mark & 0xc0000000 == 0xc0000000 drop
		meta mark & 0x80000000 == 0x80000000 meta mark set meta mark & 0x3fffffff accept
		meta mark & 0xc0000000 != 0 meta mark set meta mark & 0x3fffffff
		ct state related ct status & confirmed == 0 accept
		ct mark & 0x00000001 == 0x00000001 accept
		counter xt target NFQUEUE --queue-balance 8:11 --queue-bypass comment "luafw div 3"
	}

	chain div_forward_101 {
		type filter hook forward priority 101; policy accept;
		meta mark & 0xc0000000 == 0xc0000000 meta l4proto tcp reject with tcp reset
		meta mark & 0xc0000000 == 0xc0000000 reject with icmp type port-unreachable
		meta mark & 0x80000000 == 0x80000000 accept
		ct state related ct status & confirmed == 0 accept
		ct mark & 0x00000001 == 0x00000001 accept
		counter xt target NFQUEUE --queue-num 12 --queue-bypass comment "luafw div 4"
	}

	chain tail_forward {
		type filter hook forward priority 2147483646; policy accept;
		meta mark & 0xc0000000 != 0 meta mark set meta mark & 0x3fffffff
	}
}

table ip6 lfw {
	chain div_prerouting_m299 {
		type filter hook prerouting priority -299; policy accept;
		meta mark & 0xc0000000 != 0 jump div_prerouting_m299_mark
		meta l4proto ipv6-icmp iifname "eth0" jump div_prerouting_m299_q
	}

	chain div_prerouting_m299_q {
		ct state related ct status & confirmed == 0 accept
		ct mark & 0x00000001 == 0x00000001 accept
		counter xt target NFQUEUE --queue-num 0 --queue-bypass comment "luafw div 0"
	}

	chain div_prerouting_m299_mark {
		meta mark & 0xc0000000 == 0xc0000000 meta l4proto tcp reject with tcp reset
		meta mark & 0xc0000000 == 0xc0000000 reject with icmpv6 type port-unreachable
		meta mark & 0x80000000 == 0x80000000 meta mark set meta mark & 0x3fffffff accept
		meta mark & 0xc0000000 != 0 meta mark set meta mark & 0x3fffffff
	}

	chain div_forward_1 {
		type filter hook forward priority 1; policy accept;
		meta mark & 0xc0000000 != 0 jump div_forward_1_mark
		meta l4proto { tcp, udp } th sport 1024 th dport { 53, 80 } iifname { "lan0", "veth*" } oifname "wan*" ip6 saddr fd00::/8 ip6 daddr 2001:db8::1 jump div_forward_1_ct
	}

	chain div_forward_1_ct {
		ct state related ct status & confirmed == 0 accept
		ct mark & 0x00000001 == 0x00000001 accept
		ct state new counter xt target NFQUEUE --queue-balance 1:2 --queue-bypass comment "luafw div 1 new"
		ct state established counter xt target NFQUEUE --queue-num 3 --queue-bypass comment "luafw div 1 established"
		ct state related counter xt target NFQUEUE --queue-num 4 --queue-bypass comment "luafw div 1 related"
		ct state invalid counter xt target NFQUEUE --queue-num 5 --queue-bypass comment "luafw div 1 invalid"
	}

	chain div_forward_1_mark {
		meta mark & 0xc0000000 == 0xc0000000 meta l4proto tcp reject with tcp reset
		meta mark & 0xc0000000 == 0xc0000000 reject with icmpv6 type port-unreachable
		meta mark & 0x80000000 == 0x80000000 accept
	}

	chain div_input_1 {
		type filter hook input priority 1; policy accept;
		meta mark & 0xc0000000 == 0xc0000000 meta l4proto tcp reject with tcp reset
		meta mark & 0xc0000000 == 0xc0000000 reject with icmpv6 type port-unreachable
		meta mark & 0x80000000 == 0x80000000 meta mark set meta mark & 0x3fffffff accept
		meta mark & 0xc0000000 != 0 meta mark set meta mark & 0x3fffffff
		ct state related ct status & confirmed == 0 accept
		ct mark & 0x00000001 == 0x00000001 accept
		ct state new counter xt target NFQUEUE --queue-num 6 --queue-bypass comment "luafw div 2 new"
		ct state established counter xt target NFQUEUE --queue-num 7 --queue-bypass comment "luafw div 2 established"
		ct state related counter xt target NFQUEUE --queue-num 7 --queue-bypass comment "luafw div 2 related"
		ct state invalid counter xt target NFQUEUE --queue-num 7 --queue-bypass comment "luafw div 2 invalid"
		ct state untracked counter xt target NFQUEUE --queue-num 7 --queue-bypass comment "luafw div 2 untracked"
	}

	chain div_forward_101 {
		type filter hook forward priority 101; policy accept;
		meta mark & 0xc0000000 == 0xc0000000 meta l4proto tcp reject with tcp reset
		meta mark & 0xc0000000 == 0xc0000000 reject with icmpv6 type port-unreachable
		meta mark & 0x80000000 == 0x80000000 accept
		ct state related ct status & confirmed == 0 accept
		ct mark & 0x00000001 == 0x00000001 accept
		counter xt target NFQUEUE --queue-num 12 --queue-bypass comment "luafw div 4"
	}

	chain tail_forward {
		type filter hook forward priority 2147483646; policy accept;
		meta mark & 0xc0000000 != 0 meta mark set meta mark & 0x3fffffff
	}
}
`

func TestRuleSetStringGolden(t *testing.T) {
	got := goldenSet().String()
	if got != goldenText {
		t.Errorf("Set.String changed:\n%s", got)
	}
	if again := goldenSet().String(); again != got {
		t.Errorf("Set.String is not stable:\n%s", again)
	}
}

func TestRuleSetDefaults(t *testing.T) {
	s := Set{Diversions: []Diversion{{Hook: netfilter.Output, Queues: [netfilter.NumCTStates]QueueSet{{0, 1}}}}}.String()
	for _, want := range []string{"table ip luafw {", "table ip6 luafw {", "meta mark & 0x80000000 == 0x80000000 meta mark set meta mark & 0x3fffffff accept",
		"meta mark & 0xc0000000 == 0xc0000000 meta l4proto tcp reject with tcp reset", "meta mark & 0xc0000000 != 0 meta mark set meta mark & 0x3fffffff"} {
		if !strings.Contains(s, want) {
			t.Errorf("default rule set lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "ct state") || strings.Contains(s, "ct mark") || strings.Contains(s, "ct label") {
		t.Errorf("rule set without ByState, offload or labels uses conntrack:\n%s", s)
	}
}

// InjectMark: every diversion chain lets injected packets pass, first, and
// no tail clears the bit; without it no such rule exists.
func TestRuleSetInjectMark(t *testing.T) {
	rs := Set{InjectMark: DefaultInjectMark, Diversions: []Diversion{
		{Hook: netfilter.Output, Queues: [netfilter.NumCTStates]QueueSet{{0, 1}}}, {Hook: netfilter.Postrouting, Priority: 101, Queues: [netfilter.NumCTStates]QueueSet{{1, 1}}}}}
	s := rs.String()
	const rule = "meta mark & 0x20000000 == 0x20000000 accept"
	if n := strings.Count(s, rule); n != 4 { // two chains, two families
		t.Errorf("%d inject rules, want 4:\n%s", n, s)
	}
	if !strings.Contains(s, "meta mark set meta mark & 0x3fffffff") {
		t.Errorf("the tail clears more than skip and reject:\n%s", s)
	}
	rs.InjectMark = 0
	if strings.Contains(rs.String(), rule) {
		t.Error("inject rule without InjectMark")
	}
}

func TestRuleSetInvalid(t *testing.T) {
	q := [netfilter.NumCTStates]QueueSet{{0, 1}}
	ok := Diversion{Hook: netfilter.Input, Queues: q}
	cases := map[string]Set{
		"hook":            {Diversions: []Diversion{{Hook: netfilter.Hook(9), Queues: q}}},
		"priority":        {Diversions: []Diversion{{Hook: netfilter.Input, Priority: TailPriority, Queues: q}}},
		"marks overlap":   {SkipMark: 0x3, RejectMark: 0x2, Diversions: []Diversion{ok}},
		"inject overlap":  {InjectMark: DefaultSkipMark, Diversions: []Diversion{ok}},
		"family":          {Families: []int{5}, Diversions: []Diversion{ok}},
		"family twice":    {Families: []int{4, 4}, Diversions: []Diversion{ok}},
		"table":           {Table: "bad name", Diversions: []Diversion{ok}},
		"no queues":       {Diversions: []Diversion{{Hook: netfilter.Input}}},
		"state w/o flag":  {Diversions: []Diversion{{Hook: netfilter.Input, Queues: [netfilter.NumCTStates]QueueSet{{0, 1}, {1, 1}}}}},
		"queue range":     {Diversions: []Diversion{{Hook: netfilter.Input, Queues: [netfilter.NumCTStates]QueueSet{{65535, 2}}}}},
		"ports icmp":      {Diversions: []Diversion{{Hook: netfilter.Input, Queues: q, Filter: Filter{Protos: []uint8{1}, DPorts: []uint16{1}}}}},
		"iface long":      {Diversions: []Diversion{{Hook: netfilter.Input, Queues: q, Filter: Filter{InIfaces: []string{"sixteen-chars-xx"}}}}},
		"iface star":      {Diversions: []Diversion{{Hook: netfilter.Input, Queues: q, Filter: Filter{InIfaces: []string{"a*b"}}}}},
		"iface empty":     {Diversions: []Diversion{{Hook: netfilter.Input, Queues: q, Filter: Filter{OutIfaces: []string{""}}}}},
		"prefix":          {Diversions: []Diversion{{Hook: netfilter.Input, Queues: q, Filter: Filter{Src: []netip.Prefix{{}}}}}},
		"matches nothing": {Diversions: []Diversion{{Hook: netfilter.Input, Queues: q, Filter: Filter{Src: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Dst: []netip.Prefix{netip.MustParsePrefix("fd00::/8")}}}}},
		"icmp in v6 only": {Families: []int{6}, Diversions: []Diversion{{Hook: netfilter.Input, Queues: q, Filter: Filter{Protos: []uint8{1}}}}},
	}
	for name, rs := range cases {
		if _, err := rs.build(); err == nil {
			t.Errorf("%s: build accepted %+v", name, rs)
		} else if s := rs.String(); !strings.HasPrefix(s, "# invalid rule set: ") {
			t.Errorf("%s: String = %q, want the error", name, s)
		}
	}
}

// A diversion whose filter cannot match a family has no chain there.
func TestRuleSetFamilySplit(t *testing.T) {
	q := [netfilter.NumCTStates]QueueSet{{0, 1}}
	rs := Set{Diversions: []Diversion{
		{Hook: netfilter.Input, Queues: q, Filter: Filter{Protos: []uint8{58}}},
		{Hook: netfilter.Output, Queues: q, Filter: Filter{Dst: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}},
	}}
	prog, err := rs.build()
	if err != nil {
		t.Fatal(err)
	}
	var names [2][]string
	for i, tb := range prog.tables {
		for _, ch := range tb.chains {
			names[i] = append(names[i], ch.name)
		}
	}
	if got := strings.Join(names[0], " "); got != "div_output_0 div_output_0_q div_output_0_mark" {
		t.Errorf("ip chains %q", got)
	}
	if got := strings.Join(names[1], " "); got != "div_input_0 div_input_0_q div_input_0_mark" {
		t.Errorf("ip6 chains %q", got)
	}
}

func TestRuleIntervalElems(t *testing.T) {
	key := func(s string) []byte { return ifnameKey(s) }
	// The same elements nft 1.0.6 sends for iifname { "lo", "eth*" }.
	r := &nftRuleIR{}
	matchIfaces(r, "iifname", 0, []string{"lo", "eth*"})
	want := []nftables.SetElement{
		{Key: key(""), IntervalEnd: true},
		{Key: key("eth")}, {Key: key("eti"), IntervalEnd: true},
		{Key: key("lo")}, {Key: append(key("lo")[:15:15], 1), IntervalEnd: true},
	}
	checkElems(t, r.sets[0].elems, want)

	// Overlapping and adjacent prefixes merge; one reaching the top has no end.
	r = &nftRuleIR{}
	matchAddrs(r, 4, "saddr", []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("10.1.0.0/16"),
		netip.MustParsePrefix("11.0.0.0/8"), netip.MustParsePrefix("255.255.255.0/24"),
	})
	want = []nftables.SetElement{
		{Key: []byte{0, 0, 0, 0}, IntervalEnd: true},
		{Key: []byte{10, 0, 0, 0}}, {Key: []byte{12, 0, 0, 0}, IntervalEnd: true},
		{Key: []byte{255, 255, 255, 0}},
	}
	checkElems(t, r.sets[0].elems, want)
	if got := strings.Join(r.text, " "); got != "ip saddr { 10.0.0.0/8, 11.0.0.0/8, 255.255.255.0/24 }" {
		t.Errorf("text %q", got)
	}
}

func checkElems(t *testing.T, got, want []nftables.SetElement) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d elements %v, want %d %v", len(got), got, len(want), want)
	}
	for i := range got {
		if !bytes.Equal(got[i].Key, want[i].Key) || got[i].IntervalEnd != want[i].IntervalEnd {
			t.Errorf("element %d = %x end %v, want %x end %v", i, got[i].Key, got[i].IntervalEnd, want[i].Key, want[i].IntervalEnd)
		}
	}
}

func TestRuleComment(t *testing.T) {
	for _, c := range []struct {
		div   int
		state netfilter.CTState
	}{{0, netfilter.CTUnknown}, {3, netfilter.CTNew}, {12, netfilter.CTUntracked}} {
		d, s, ok := parseCounterComment(counterComment(c.div, c.state))
		if !ok || d != c.div || s != c.state {
			t.Errorf("comment %q parsed as %d %d %v", counterComment(c.div, c.state), d, s, ok)
		}
	}
	for _, bad := range []string{"", "luafw div x", "luafw div 1 sleepy", "luafw div 1 ", "other"} {
		if _, _, ok := parseCounterComment(bad); ok {
			t.Errorf("parsed %q", bad)
		}
	}
}

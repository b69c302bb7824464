package rules

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/luafw/luafw/netfilter"
	"github.com/luafw/luafw/nfq/internal/labtest"

	nfqueue "github.com/florianl/go-nfqueue/v2"

	"github.com/luafw/luafw/tests/lab"
)

// Root-only tests of the diversion rules in a lab (client, router, server
// namespaces); lab.New skips them when not root.

// installIn installs rs inside ns and removes it at cleanup.
func installIn(t *testing.T, ctx context.Context, ns *lab.NS, rs Set) {
	t.Helper()
	if err := ns.Do(func() error { return Install(ctx, rs) }); err != nil {
		t.Fatalf("Install in %s: %v", ns, err)
	}
	t.Cleanup(func() {
		if err := ns.Do(func() error { return Remove(context.Background(), rs.Table) }); err != nil && !errors.Is(err, lab.ErrWrongNamespace) {
			t.Logf("Remove in %s: %v", ns, err)
		}
	})
}

// readCounters reads DiversionCounters inside ns, keyed "fam/div/state".
func readCounters(t *testing.T, ctx context.Context, ns *lab.NS, table string) map[string]uint64 {
	t.Helper()
	var cs []DiversionCounter
	if err := ns.Do(func() (err error) { cs, err = DiversionCounters(ctx, table); return err }); err != nil {
		t.Fatalf("DiversionCounters: %v", err)
	}
	m := map[string]uint64{}
	for _, c := range cs {
		st := "-"
		if c.State != netfilter.CTUnknown {
			st = c.State.String()
		}
		m[fmt.Sprintf("%d/%d/%s", c.Family, c.Diversion, st)] = c.Packets
	}
	return m
}

var countersRE = regexp.MustCompile(`\[\d+:\d+\]`)

// snapshot captures everything in ns's netfilter configuration as text,
// without counters: nft tables by header, and iptables-save output.
func snapshot(t *testing.T, ctx context.Context, ns *lab.NS) (map[string]string, string) {
	t.Helper()
	out, err := ns.Run(ctx, "nft", "-s", "list", "ruleset")
	if err != nil {
		t.Fatal(err)
	}
	tables := map[string]string{}
	var cur string
	for _, line := range strings.SplitAfter(out, "\n") {
		if strings.HasPrefix(line, "table ") {
			cur = strings.TrimSuffix(strings.TrimSpace(line), " {")
		}
		if cur != "" && !strings.HasPrefix(line, "# Warning") {
			tables[cur] += line
		}
		if line == "}\n" {
			cur = ""
		}
	}
	var xt strings.Builder
	for _, cmd := range []string{"iptables-save", "ip6tables-save", "iptables-legacy-save"} {
		out, err := ns.Run(ctx, cmd)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(out, "\n") {
			if !strings.HasPrefix(line, "#") {
				xt.WriteString(countersRE.ReplaceAllString(line, "") + "\n")
			}
		}
	}
	return tables, xt.String()
}

func TestRulesInstallCoexistRemove(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := labtest.Context(t)
	r := l.Router
	// The operator's own rules: iptables (nft and legacy), an nft table with
	// our name in another family, and another table.
	if _, err := r.Shell(ctx, `
iptables -A INPUT -p tcp --dport 2222 -j ACCEPT
iptables -t mangle -A FORWARD -p udp --dport 5353 -j MARK --set-mark 0x5
ip6tables -A FORWARD -p udp --dport 5353 -j DROP
iptables-legacy -A OUTPUT -p icmp -j ACCEPT
nft add table inet luafw
nft add chain inet luafw c '{ type filter hook forward priority 0; }'
nft add rule inet luafw c tcp dport 1234 counter
nft add table ip other
nft add chain ip other c '{ type filter hook input priority 10; }'
nft add rule ip other c ct state new counter
`); err != nil {
		t.Fatal(err)
	}
	before, xtBefore := snapshot(t, ctx, r)

	first := Set{Diversions: []Diversion{
		{Hook: netfilter.Forward, Priority: 1, ByState: true, Queues: [netfilter.NumCTStates]QueueSet{{0, 1}, {1, 1}, {2, 1}, {3, 1}, {4, 1}}},
		{Hook: netfilter.Input, Priority: -149, Queues: [netfilter.NumCTStates]QueueSet{{5, 2}}, Filter: Filter{Protos: []uint8{17}}},
	}}
	second := Set{Families: []int{4}, Diversions: []Diversion{
		{Hook: netfilter.Output, Priority: 0, Queues: [netfilter.NumCTStates]QueueSet{{7, 1}}, Filter: Filter{Protos: []uint8{6}}},
	}}
	var installed bool
	check := func(want bool) {
		t.Helper()
		if err := r.Do(func() (err error) { installed, err = Installed(ctx, ""); return err }); err != nil {
			t.Fatal(err)
		}
		if installed != want {
			t.Fatalf("Installed = %v, want %v", installed, want)
		}
	}
	check(false)
	installIn(t, ctx, r, first)
	check(true)
	// A second Install replaces the first run's tables (as after a crash).
	if err := r.Do(func() error { return Install(ctx, second) }); err != nil {
		t.Fatalf("Install over existing tables: %v", err)
	}
	tables, xtAfter := snapshot(t, ctx, r)
	ours := tables["table ip luafw"]
	if !strings.Contains(ours, "chain div_output_0") || !strings.Contains(ours, "queue num 7 bypass") || !strings.Contains(ours, "chain div_output_0_mark") {
		t.Errorf("table ip luafw lacks the second rule set:\n%s", ours)
	}
	if strings.Contains(ours, "div_forward_1") || strings.Contains(ours, "div_input_m149") {
		t.Errorf("table ip luafw keeps chains of the first install:\n%s", ours)
	}
	if stale, ok := tables["table ip6 luafw"]; ok {
		t.Errorf("IPv4-only install left the first install's ip6 table:\n%s", stale)
	}
	delete(tables, "table ip luafw")
	if !mapsEqual(tables, before) {
		t.Errorf("other tables changed by Install:\nbefore %q\nafter  %q", before, tables)
	}
	if xtAfter != xtBefore {
		t.Errorf("iptables changed by Install:\nbefore:\n%s\nafter:\n%s", xtBefore, xtAfter)
	}

	for range 2 { // idempotent
		if err := r.Do(func() error { return Remove(ctx, "") }); err != nil {
			t.Fatalf("Remove: %v", err)
		}
	}
	check(false)
	after, xtRemoved := snapshot(t, ctx, r)
	if !mapsEqual(after, before) {
		t.Errorf("tables after Remove differ from before Install:\nbefore %q\nafter  %q", before, after)
	}
	if xtRemoved != xtBefore {
		t.Errorf("iptables changed by Remove:\nbefore:\n%s\nafter:\n%s", xtBefore, xtRemoved)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// With no reader bound, bypass lets every diverted packet through.
func TestRulesBypassWithoutReader(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := labtest.Context(t)
	installIn(t, ctx, l.Router, Set{Diversions: []Diversion{
		{Hook: netfilter.Forward, Priority: 1, ByState: true, Queues: [netfilter.NumCTStates]QueueSet{{0, 2}, {2, 1}, {3, 1}, {4, 1}, {5, 1}}},
	}})
	srv, err := l.Server.ServeTCP(":0")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []netip.Addr{l.Server.Addr4, l.Server.Addr6} {
		addr := netip.AddrPortFrom(a, srv.Port()).String()
		if res := l.Client.TCPConnect(ctx, addr, 5*time.Second); res.Outcome != lab.Connected {
			t.Fatalf("connect %s through unread queues: %v", addr, res)
		}
	}
	c := readCounters(t, ctx, l.Router, "")
	for _, k := range []string{"4/0/new", "4/0/established", "6/0/new", "6/0/established"} {
		if c[k] == 0 {
			t.Errorf("counter %s = 0, want packets diverted (and bypassed); all: %v", k, c)
		}
	}
}

// Packets that do not match a diversion's filter are never queued.
func TestRulesFilter(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := labtest.Context(t)
	srvA, err := l.Server.ServeTCP(":0")
	if err != nil {
		t.Fatal(err)
	}
	srvB, err := l.Server.ServeTCP(":0")
	if err != nil {
		t.Fatal(err)
	}
	sink, err := l.Server.ServeUDP(":0")
	if err != nil {
		t.Fatal(err)
	}
	server4 := netip.PrefixFrom(l.Server.Addr4, 32)
	installIn(t, ctx, l.Router, Set{Diversions: []Diversion{
		// 0: TCP to srvA's port only.
		{Hook: netfilter.Forward, Priority: 1, Queues: [netfilter.NumCTStates]QueueSet{{0, 1}}, Filter: Filter{Protos: []uint8{6}, DPorts: []uint16{srvA.Port()}}},
		// 1: packets entering on r1 (the server side) only, by state.
		{Hook: netfilter.Forward, Priority: 2, ByState: true, Queues: [netfilter.NumCTStates]QueueSet{{1, 1}, {2, 1}}, Filter: Filter{InIfaces: []string{"r1"}}},
		// 2: from the server's IPv4 address only (no IPv6 chain at all).
		{Hook: netfilter.Forward, Priority: 3, Queues: [netfilter.NumCTStates]QueueSet{{3, 1}}, Filter: Filter{Src: []netip.Prefix{server4}}},
		// 3: to a set of destinations, leaving through a set of interfaces
		// with a wildcard, to a set of ports.
		{Hook: netfilter.Postrouting, Priority: 4, Queues: [netfilter.NumCTStates]QueueSet{{4, 1}}, Filter: Filter{
			Dst:       []netip.Prefix{netip.MustParsePrefix("10.99.0.0/16"), server4, netip.MustParsePrefix("fd00:99::/32")},
			OutIfaces: []string{"x*", "r1"}, DPorts: []uint16{srvB.Port(), 9}}},
	}})

	// Traffic that diversions 0 and 3 do not match: UDP to the sink, TCP to
	// srvB over IPv6 (diversion 3 has no IPv6 destination for it).
	if _, err := l.Client.UDPFlood(ctx, netip.AddrPortFrom(l.Server.Addr4, sink.Port()).String(), 10, 16, 0); err != nil {
		t.Fatal(err)
	}
	if err := sink.WaitCount(ctx, 10); err != nil {
		t.Fatal(err)
	}
	if res := l.Client.TCPConnect(ctx, netip.AddrPortFrom(l.Server.Addr6, srvB.Port()).String(), 5*time.Second); res.Outcome != lab.Connected {
		t.Fatalf("connect: %v", res)
	}
	c := readCounters(t, ctx, l.Router, "")
	for _, k := range []string{"4/0/-", "6/0/-", "4/3/-", "6/3/-", "4/1/new", "6/1/new"} {
		if c[k] != 0 {
			t.Errorf("counter %s = %d, want 0 (no matching traffic yet); all %v", k, c[k], c)
		}
	}
	if _, ok := c["6/2/-"]; ok {
		t.Errorf("diversion 2 (IPv4 sources only) has an IPv6 rule: %v", c)
	}

	// Now matching traffic.
	for _, p := range []uint16{srvA.Port(), srvB.Port()} {
		if res := l.Client.TCPConnect(ctx, netip.AddrPortFrom(l.Server.Addr4, p).String(), 5*time.Second); res.Outcome != lab.Connected {
			t.Fatalf("connect: %v", res)
		}
	}
	c = readCounters(t, ctx, l.Router, "")
	for _, k := range []string{"4/0/-", "4/1/established", "6/1/established", "4/2/-", "4/3/-"} {
		if c[k] == 0 {
			t.Errorf("counter %s = 0, want matching packets; all %v", k, c)
		}
	}
	// Nothing new entered on r1 (the server never opens connections).
	for _, k := range []string{"4/1/new", "6/1/new", "6/0/-", "6/3/-"} {
		if c[k] != 0 {
			t.Errorf("counter %s = %d, want 0; all %v", k, c[k], c)
		}
	}
}

// NF_REPEAT re-runs only the diversion chain that queued the packet; with
// the skip mark the chain lets it through, later diversions in the same
// hook skip it, and the tail chain clears the mark so the next hook diverts
// it again.
func TestRulesRepeatSkipsAndTailClears(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := labtest.Context(t)
	r := l.Router
	sink, err := l.Server.ServeUDP(":0")
	if err != nil {
		t.Fatal(err)
	}
	port := sink.Port()
	// Probes of our own, around our chains.
	if _, err := r.Shell(ctx, fmt.Sprintf(`
nft add table ip probe
nft add chain ip probe fwd_before '{ type filter hook forward priority -10; }'
nft add chain ip probe fwd_after '{ type filter hook forward priority 10; }'
nft add chain ip probe post_before '{ type filter hook postrouting priority -10; }'
nft add rule ip probe fwd_before udp dport %[1]d counter
nft add rule ip probe fwd_after udp dport %[1]d meta mark '&' 0x80000000 == 0x80000000 counter
nft add rule ip probe post_before udp dport %[1]d meta mark '&' 0xc0000000 == 0 counter
`, port)); err != nil {
		t.Fatal(err)
	}
	installIn(t, ctx, r, Set{Families: []int{4}, Diversions: []Diversion{
		{Hook: netfilter.Forward, Priority: 0, Queues: [netfilter.NumCTStates]QueueSet{{10, 1}}, Filter: Filter{Protos: []uint8{17}}},
		{Hook: netfilter.Forward, Priority: 5, Queues: [netfilter.NumCTStates]QueueSet{{12, 1}}, Filter: Filter{Protos: []uint8{17}}},
		{Hook: netfilter.Postrouting, Priority: 0, Queues: [netfilter.NumCTStates]QueueSet{{11, 1}}, Filter: Filter{Protos: []uint8{17}}},
	}})
	var fwd, fwdLater, post, postMarked atomic.Int64
	labtest.Reader(t, r, 10, func(a nfqueue.Attribute) (int, uint32, bool) {
		fwd.Add(1)
		return nfqueue.NfRepeat, labtest.PacketMark(a) | DefaultSkipMark, true
	})
	labtest.Reader(t, r, 12, func(a nfqueue.Attribute) (int, uint32, bool) {
		fwdLater.Add(1)
		return nfqueue.NfAccept, 0, false
	})
	labtest.Reader(t, r, 11, func(a nfqueue.Attribute) (int, uint32, bool) {
		post.Add(1)
		if labtest.PacketMark(a)&DefaultSkipMark != 0 {
			postMarked.Add(1)
		}
		return nfqueue.NfAccept, 0, false
	})
	const n = 20
	if _, err := l.Client.UDPFlood(ctx, netip.AddrPortFrom(l.Server.Addr4, port).String(), n, 16, 200); err != nil {
		t.Fatal(err)
	}
	if err := sink.WaitCount(ctx, n); err != nil {
		t.Fatal(err)
	}
	if got := fwd.Load(); got != n {
		t.Errorf("forward queue saw %d packets, want %d (each once: the repeat must not loop)", got, n)
	}
	if got := fwdLater.Load(); got != 0 {
		t.Errorf("the later forward diversion saw %d packets, want 0 (skip mark)", got)
	}
	if got := post.Load(); got != n {
		t.Errorf("postrouting queue saw %d packets, want %d (diverted again after the tail)", got, n)
	}
	if got := postMarked.Load(); got != 0 {
		t.Errorf("postrouting queue saw the skip mark on %d packets, want 0 (the tail clears it)", got)
	}
	for _, p := range []struct {
		chain string
		want  uint64
	}{{"fwd_before", n}, {"fwd_after", n}, {"post_before", n}} {
		got, _, err := r.NftCounter(ctx, "ip", "probe", p.chain, "counter")
		if err != nil {
			t.Fatal(err)
		}
		if got != p.want {
			t.Errorf("probe %s counted %d, want %d", p.chain, got, p.want)
		}
	}
}

// A packet repeated with SkipMark|RejectMark is rejected: TCP with a reset,
// UDP with ICMP port unreachable, in both families.
func TestRulesRejectMark(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := labtest.Context(t)
	srv, err := l.Server.ServeTCP(":0")
	if err != nil {
		t.Fatal(err)
	}
	sink, err := l.Server.ServeUDP(":0")
	if err != nil {
		t.Fatal(err)
	}
	installIn(t, ctx, l.Router, Set{Diversions: []Diversion{
		{Hook: netfilter.Forward, Priority: 0, Queues: [netfilter.NumCTStates]QueueSet{{20, 1}}},
	}})
	var mu sync.Mutex
	seen := map[uint8]int{}
	labtest.Reader(t, l.Router, 20, func(a nfqueue.Attribute) (int, uint32, bool) {
		if a.Payload != nil && len(*a.Payload) > 9 {
			proto := (*a.Payload)[9] // IPv4 protocol
			if (*a.Payload)[0]>>4 == 6 {
				proto = (*a.Payload)[6] // IPv6 next header
			}
			mu.Lock()
			seen[proto]++
			mu.Unlock()
		}
		return nfqueue.NfRepeat, labtest.PacketMark(a) | DefaultSkipMark | DefaultRejectMark, true
	})
	for _, a := range []netip.Addr{l.Server.Addr4, l.Server.Addr6} {
		addr := netip.AddrPortFrom(a, srv.Port()).String()
		res := l.Client.TCPConnect(ctx, addr, 5*time.Second)
		if res.Outcome != lab.Refused || !errors.Is(res.Err, syscall.ECONNREFUSED) {
			t.Errorf("TCP connect to %s: %v (%v), want refused by a reset", addr, res, res.Err)
		}
		uaddr := netip.AddrPortFrom(a, sink.Port()).String()
		c, err := l.Client.Dial(ctx, "udp", uaddr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		_, err = c.Read(make([]byte, 10))
		c.Close()
		var ne net.Error
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("UDP to %s: read error %v (timeout %v), want ECONNREFUSED from an ICMP port unreachable", uaddr, err, errors.As(err, &ne) && ne.Timeout())
		}
	}
	if got := sink.Count(); got != 0 {
		t.Errorf("UDP sink received %d datagrams, want 0", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen[6] == 0 || seen[17] == 0 {
		t.Errorf("queue saw protocols %v, want TCP and UDP", seen)
	}
}

// A packet repeated with the reject mark in postrouting is dropped (the
// kernel cannot reject there); the next packets of the flow are unaffected.
func TestRulesRejectMarkPostroutingDrops(t *testing.T) {
	l := lab.New(t, lab.Options{NoIPv6: true})
	ctx := labtest.Context(t)
	sink, err := l.Server.ServeUDP(":0")
	if err != nil {
		t.Fatal(err)
	}
	installIn(t, ctx, l.Router, Set{Families: []int{4}, Diversions: []Diversion{
		{Hook: netfilter.Postrouting, Priority: 0, Queues: [netfilter.NumCTStates]QueueSet{{21, 1}}, Filter: Filter{Protos: []uint8{17}}},
	}})
	var n atomic.Int64
	labtest.Reader(t, l.Router, 21, func(a nfqueue.Attribute) (int, uint32, bool) {
		if n.Add(1)%2 == 1 { // reject every other datagram
			return nfqueue.NfRepeat, labtest.PacketMark(a) | DefaultSkipMark | DefaultRejectMark, true
		}
		return nfqueue.NfAccept, 0, false
	})
	if _, err := l.Client.UDPFlood(ctx, netip.AddrPortFrom(l.Server.Addr4, sink.Port()).String(), 10, 16, 200); err != nil {
		t.Fatal(err)
	}
	if err := sink.WaitCount(ctx, 5); err != nil {
		t.Fatal(err)
	}
	// All ten were queued before the fifth could arrive; the five rejected
	// ones were dropped for good.
	if got := n.Load(); got != 10 {
		t.Errorf("queue saw %d datagrams, want 10", got)
	}
	pkts, _, err := l.Router.NftCounter(ctx, "ip", "luafw", "div_postrouting_0_q", "luafw div 0")
	if err != nil {
		t.Fatal(err)
	}
	if pkts != 10 {
		t.Errorf("queue rule counted %d, want 10", pkts)
	}
	if got := sink.Count(); got != 5 {
		t.Errorf("sink received %d datagrams, want 5", got)
	}
}

// The kernel takes every expression shape the builder makes, and nft reads
// the sets back as the values given.
func TestRulesGoldenSetInstalls(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := labtest.Context(t)
	rs := goldenSet()
	rs.CTLabels = true
	installIn(t, ctx, l.Router, rs)
	out, err := l.Router.Run(ctx, "nft", "list", "ruleset")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`meta l4proto { tcp, udp } th sport 1024 th dport { 53, 80 } iifname { "lan0", "veth*" } oifname "wan*" ip saddr { 10.0.0.0/8, 192.168.1.0/24 } ip daddr 203.0.113.7 jump div_forward_1_ct`,
		`meta l4proto { tcp, udp } th sport 1024 th dport { 53, 80 } iifname { "lan0", "veth*" } oifname "wan*" ip6 saddr fd00::/8 ip6 daddr 2001:db8::1 jump div_forward_1_ct`,
		`meta l4proto icmp iifname "eth0" jump div_prerouting_m299_q`,
		`meta l4proto ipv6-icmp iifname "eth0" jump div_prerouting_m299_q`,
		`meta mark != 0x00000000/2 jump div_prerouting_m299_mark`, // nft prints masks as prefixes
		`counter packets 0 bytes 0 queue num 0 bypass comment "luafw div 0"`,
		`meta mark != 0x00000000/2 meta mark set meta mark & 0x3fffffff`,
		`ct state new counter packets 0 bytes 0 queue num 1-2 bypass comment "luafw div 1 new"`,
		`counter packets 0 bytes 0 queue num 8-11 bypass comment "luafw div 3"`,
		`type filter hook forward priority 2147483646; policy accept;`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("nft list ruleset lacks %q:\n%s", want, out)
		}
	}
}

package tests

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/luafw/luafw/tests/lab"
)

// The kernel bans (state.map's kernel = "drop"): a banned source's packets
// are dropped in prerouting by the bans table, never queued, on every
// router of a fleet; `luafw state delete` lifts a ban in the kernel; a TTL
// expires there too.

const kbanPlugin = `
local bans = state.map("bans", {scope = fw.options.scope, kernel = "drop"})
local seen = state.map("seen")
fw.register{hook = "forward", fn = function(pkt)
	if pkt.proto == "udp" then seen:incr(pkt.src) end
	if pkt.proto == "tcp" and pkt.tcp.syn and not pkt.tcp.ack then
		if pkt.dport == 2323 then bans:set(pkt.src, true, 600); return fw.DROP end
		if pkt.dport == 2324 then bans:set(pkt.src, true, 1); return fw.DROP end
	end
	if bans:get(pkt.src) then return fw.DROP end
end}
`

// kbanConfig is a configuration diverting forwarded TCP and UDP to the
// plugin; state is the state section, if any.
func kbanConfig(scope, state string) map[string]string {
	return map[string]string{
		"kban.lua": kbanPlugin,
		"luafw.yaml": fmt.Sprintf(`plugins:
  - file: kban.lua
    options: {scope: %s}
divert:
  forward: {protos: [tcp, udp]}
%s`, scope, state),
	}
}

// kbanHas reports whether set (of table inet luafw) holds addr.
func kbanHas(t *testing.T, ctx context.Context, ns *lab.NS, set, addr string) bool {
	t.Helper()
	out, err := ns.Run(ctx, "nft", "list", "set", "inet", "luafw", set)
	if err != nil {
		t.Fatalf("nft list set inet luafw %s: %v", set, err)
	}
	for _, f := range strings.FieldsFunc(out, func(r rune) bool { return r == ' ' || r == ',' || r == '{' || r == '\n' || r == '\t' }) {
		if f == addr {
			return true
		}
	}
	return false
}

// kbanUntil polls cond for up to 10 s and returns how long it took.
func kbanUntil(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// kbanFlood floods dst from src for d and checks that none of it passed
// the router or reached its plugin; it returns the datagrams sent and the
// rate the drop rule of set counted them at.
func kbanFlood(t *testing.T, ctx context.Context, client, router *lab.NS, sink *lab.UDPSink, src netip.Addr, dst, family, table, set string, d time.Duration) (int, float64) {
	t.Helper()
	seen := func() string {
		_, out, _ := luafwIn(t, ctx, router, "state", "get", "seen", src.String())
		return out
	}
	seen0 := seen()
	before := sink.Count()
	dropped0, _, err := router.NftCounter(ctx, family, table, "bans", set+" ")
	if err != nil {
		t.Fatal(err)
	}
	res, err := client.UDPBlast(ctx, lab.Blast{Dst: dst, Sources: []netip.Addr{src}, Size: 64, Duration: d, Max: 5_000_000})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	dropped1, _, err := router.NftCounter(ctx, family, table, "bans", set+" ")
	if err != nil {
		t.Fatal(err)
	}
	if got := sink.Count() - before; got != 0 {
		t.Errorf("flood from %v: %d of %d datagrams passed the router", src, got, res.Sent)
	}
	if got := seen(); got != seen0 {
		t.Errorf("flood from %v: the plugin saw its datagrams: %q, before %q", src, got, seen0)
	}
	if int(dropped1-dropped0) < res.Sent {
		t.Errorf("flood from %v: the drop rule counted %d of %d datagrams", src, dropped1-dropped0, res.Sent)
	}
	return res.Sent, float64(dropped1-dropped0) / res.Elapsed.Seconds()
}

// TestKernelBanDropsFlood: a ban a plugin writes lands in the kernel set;
// a flood from the banned source is dropped there (0 datagrams reach the
// plugin or the server), at the rate nftables drops a source of a static
// set; `luafw state delete` lifts the ban; a 1 s TTL expires in the
// kernel; stopping the daemon removes the table.
func TestKernelBanDropsFlood(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	l := lab.New(t, lab.Options{Prefix: "lfwkb", NoIPv6: true})
	serveTCP(t, l.Server, 8081, 2323, 2324)
	sink, err := l.Server.ServeUDP(":9999")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	// A second source on the client, dropped by a static nftables set at
	// the same hook and priority: the yardstick.
	if _, err := l.Client.Shell(ctx, "ip addr add 10.201.1.7/24 dev c0"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Router.Shell(ctx, `nft -f - <<'EOF'
table inet lfwkbstatic {
	set s {
		type ipv4_addr
		elements = { 10.201.1.7 }
	}
	chain bans {
		type filter hook prerouting priority -2147483648; policy accept;
		ip saddr @s counter drop
	}
}
EOF`); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, l.Router, kbanConfig("local", ""))
	const src = "10.201.1.2"
	if res := connect(ctx, l.Client, l.Server.Addr4, 8081, time.Second); res.Outcome != lab.Connected {
		t.Fatalf("before any ban: %v", res)
	}
	start := time.Now()
	go connect(ctx, l.Client, l.Server.Addr4, 2323, 300*time.Millisecond) // the honeypot bans the client
	kbanUntil(t, "the ban in the kernel set", func() bool { return kbanHas(t, ctx, l.Router, "local_bans_v4", src) })
	t.Logf("ban written by the plugin: in the kernel set %v after the SYN was sent", time.Since(start).Round(time.Millisecond))

	dst := l.Server.Addr4.String() + ":9999"
	var ours, static []float64
	for range 3 {
		_, r := kbanFlood(t, ctx, l.Client, l.Router, sink, netip.MustParseAddr(src), dst, "inet", "luafw", "local_bans_v4", time.Second)
		ours = append(ours, r)
		_, r = kbanFlood(t, ctx, l.Client, l.Router, sink, netip.MustParseAddr("10.201.1.7"), dst, "inet", "lfwkbstatic", "@s", time.Second)
		static = append(static, r)
	}
	mean := func(v []float64) float64 {
		s := 0.0
		for _, x := range v {
			s += x
		}
		return s / float64(len(v))
	}
	t.Logf("flood dropped: luafw kernel ban %.0f pkt/s, static nftables set %.0f pkt/s: ratio %.3f (runs %v, %v)",
		mean(ours), mean(static), mean(ours)/mean(static), ours, static)

	// A reload that adds a mirrored map keeps the ban in the kernel.
	files := kbanConfig("local", "")
	files["kban.lua"] += "\nlocal more = state.map(\"bans2\", {kernel = \"drop\"})\n"
	writeFiles(t, d.dir, files)
	if out, err := l.Router.Run(ctx, luafwBinary(t), "reload"); err != nil {
		t.Fatalf("luafw reload: %v\n%s", err, out)
	}
	if out, _ := l.Router.Run(ctx, "nft", "list", "table", "inet", "luafw"); !strings.Contains(out, "local_bans2_v4") || !kbanHas(t, ctx, l.Router, "local_bans_v4", src) {
		t.Fatalf("after a reload adding bans2:\n%s", out)
	}

	// The operator lifts the ban: out of the kernel, traffic passes.
	code, out, errs := luafwIn(t, ctx, l.Router, "state", "delete", "bans", src)
	if code != 0 {
		t.Fatalf("luafw state delete: exit %d\n%s%s", code, out, errs)
	}
	kbanUntil(t, "the ban lifted in the kernel", func() bool { return !kbanHas(t, ctx, l.Router, "local_bans_v4", src) })
	if res := connect(ctx, l.Client, l.Server.Addr4, 8081, time.Second); res.Outcome != lab.Connected {
		t.Fatalf("after luafw state delete: %v", res)
	}

	// A 1 s ban expires in the kernel.
	written := time.Now()
	connect(ctx, l.Client, l.Server.Addr4, 2324, 300*time.Millisecond)
	kbanUntil(t, "the 1 s ban in the kernel set", func() bool { return kbanHas(t, ctx, l.Router, "local_bans_v4", src) })
	kbanUntil(t, "the 1 s ban expired in the kernel", func() bool { return !kbanHas(t, ctx, l.Router, "local_bans_v4", src) })
	t.Logf("a 1 s ban left the kernel set %v after the SYN that wrote it", time.Since(written).Round(time.Millisecond))
	// (A SYN in the kernel's last millisecond may meet the map's: the
	// retransmission passes.)
	if res := connect(ctx, l.Client, l.Server.Addr4, 8081, 3*time.Second); res.Outcome != lab.Connected {
		t.Fatalf("after the ban expired: %v", res)
	}

	code, out, _ = luafwIn(t, ctx, l.Router, "status")
	if code != 0 || !strings.Contains(out, "kernel bans local map bans:") {
		t.Errorf("luafw status: exit %d\n%s", code, out)
	}
	d.stop()
	if out, _ := l.Router.Run(ctx, "nft", "list", "tables"); strings.Contains(out, "inet luafw") {
		t.Errorf("after stop: %s", out)
	}
}

// TestFleetKernelBan: a ban written on router A lands in router B's
// kernel set; a flood through B from the banned source is dropped there
// with 0 datagrams reaching B's plugin; `luafw state delete` on B lifts it
// in both kernels.
func TestFleetKernelBan(t *testing.T) {
	needRedis(t)
	ctx := testCtx(t, 2*time.Minute)
	f := newFleet(t, ctx)
	serveTCP(t, f.l.Server, 8081, 2323)
	sink, err := f.l.Server.ServeUDP(":9999")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	startDaemon(t, f.l.Router, kbanConfig("cluster", fleetState("10.201.5.2:6379")))
	startDaemon(t, f.b, kbanConfig("cluster", fleetState("10.201.6.2:6379")))
	time.Sleep(5 * fleetInterval)
	if !dialFrom(ctx, f.l.Client, viaB+":8081", time.Second) {
		t.Fatal("before any ban: the source cannot connect through B")
	}
	start := time.Now()
	go dialFrom(ctx, f.l.Client, viaA+":2323", 300*time.Millisecond) // banned on A
	kbanUntil(t, "A's ban in B's kernel set", func() bool { return kbanHas(t, ctx, f.b, "cluster_bans_v4", fleetSrc) })
	t.Logf("a ban written on A: in B's kernel set %v after the SYN was sent (sync interval %v)", time.Since(start).Round(time.Millisecond), fleetInterval)
	if !kbanHas(t, ctx, f.l.Router, "cluster_bans_v4", fleetSrc) {
		t.Error("the ban is not in A's own kernel set")
	}
	// (UDPBlast refuses addresses outside the lab's first subnets.)
	_, seen0, _ := luafwIn(t, ctx, f.b, "state", "get", "seen", fleetSrc)
	dropped0, _, err := f.b.NftCounter(ctx, "inet", "luafw", "bans", "cluster_bans_v4 ")
	if err != nil {
		t.Fatal(err)
	}
	const flood = 20_000
	sent := 0
	err = f.l.Client.Do(func() error {
		c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(fleetSrc+":0")),
			net.UDPAddrFromAddrPort(netip.MustParseAddrPort(viaB+":9999")))
		if err != nil {
			return err
		}
		defer c.Close()
		for range flood {
			if _, err := c.Write(make([]byte, 64)); err == nil {
				sent++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	dropped1, _, err := f.b.NftCounter(ctx, "inet", "luafw", "bans", "cluster_bans_v4 ")
	if err != nil {
		t.Fatal(err)
	}
	_, seen1, _ := luafwIn(t, ctx, f.b, "state", "get", "seen", fleetSrc)
	t.Logf("flood through B: %d datagrams sent, %d dropped by B's kernel set, %d reached the server", sent, dropped1-dropped0, sink.Count())
	if sink.Count() != 0 || seen1 != seen0 || int(dropped1-dropped0) < sent {
		t.Errorf("flood through B: %d sent, %d dropped in the kernel, %d reached the server, the plugin saw %q (before %q)",
			sent, dropped1-dropped0, sink.Count(), seen1, seen0)
	}

	code, out, errs := luafwIn(t, ctx, f.b, "state", "delete", "bans", fleetSrc)
	if code != 0 {
		t.Fatalf("state delete on B: exit %d\n%s%s", code, out, errs)
	}
	for _, ns := range []*lab.NS{f.b, f.l.Router} {
		kbanUntil(t, "the ban lifted in "+ns.Name+"'s kernel", func() bool { return !kbanHas(t, ctx, ns, "cluster_bans_v4", fleetSrc) })
	}
	if !dialFrom(ctx, f.l.Client, viaA+":8081", time.Second) || !dialFrom(ctx, f.l.Client, viaB+":8081", time.Second) {
		t.Error("the ban lifted on B still holds somewhere")
	}
}

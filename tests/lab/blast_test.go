package lab

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestUDPBlast(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	l := New(t, Options{NoIPv6: true})
	sink := must[*UDPSink](t)(l.Server.ServeUDP(":0"))
	dst := netip.AddrPortFrom(l.Server.Addr4, sink.Port()).String()

	// Count bound, two sources in turn, paced: every datagram arrives and
	// the router sees both sources.
	second := netip.MustParseAddr("10.201.1.3")
	if _, err := l.Client.Shell(ctx, "ip addr add 10.201.1.3/24 dev c0"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Router.Shell(ctx, `
iptables -A FORWARD -p udp -s 10.201.1.2 --sport 40000
iptables -A FORWARD -p udp -s 10.201.1.3 --sport 40000`); err != nil {
		t.Fatal(err)
	}
	const total, rate, batch = 3000, 30000, 50
	res, err := l.Client.UDPBlast(ctx, Blast{Dst: dst, Sources: []netip.Addr{l.Client.Addr4, second}, SrcPort: 40000,
		Size: 64, Duration: 10 * time.Second, Max: total, Rate: rate, Batch: batch})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != total {
		t.Fatalf("sent %d, want exactly Max = %d (%+v)", res.Sent, total, res)
	}
	// Pacing: no more than one batch ahead of the schedule.
	if least := time.Duration(total-batch) * time.Second / rate; res.Elapsed < least {
		t.Errorf("sent %d at rate %d in %v, want at least %v", total, rate, res.Elapsed, least)
	}
	if err := sink.WaitCount(ctx, total); err != nil {
		t.Fatal(err)
	}
	if sink.Bytes() != total*64 {
		t.Errorf("sink got %d bytes, want %d", sink.Bytes(), total*64)
	}
	// Paced batches vary in size: each source must carry some, together all.
	var sum uint64
	for _, src := range []string{"10.201.1.2", "10.201.1.3"} {
		p, _, err := l.Router.IptablesCounter(ctx, "filter", "FORWARD", "-s "+src+"/32 -p udp -m udp --sport 40000")
		if err != nil {
			t.Fatal(err)
		}
		if p < total/4 {
			t.Errorf("router forwarded %d datagrams from %s, want at least %d (sources take turns)", p, src, total/4)
		}
		sum += p
	}
	if sum != total {
		t.Errorf("router forwarded %d datagrams from the two sources, want %d", sum, total)
	}

	// Duration bound: an unpaced blast with a huge Max ends on time.
	before := sink.Count()
	res, err = l.Client.UDPBlast(ctx, Blast{Dst: dst, Size: 64, Duration: 200 * time.Millisecond, Max: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent <= 0 || res.Sent >= 1<<40 {
		t.Errorf("duration-bound blast sent %d", res.Sent)
	}
	if err := sink.WaitCount(ctx, before+1); err != nil {
		t.Error(err)
	}

	// Refusals: outside the lab, unbounded, wrong family.
	for name, b := range map[string]Blast{
		"outside the lab":  {Dst: "192.0.2.1:9", Duration: time.Second, Max: 1},
		"a name":           {Dst: "localhost:9", Duration: time.Second, Max: 1},
		"no Max":           {Dst: dst, Duration: time.Second},
		"no Duration":      {Dst: dst, Max: 1},
		"IPv6 source":      {Dst: dst, Duration: time.Second, Max: 1, Sources: []netip.Addr{netip.MustParseAddr("fd00:201:1::2")}},
		"batch too big":    {Dst: dst, Duration: time.Second, Max: 1, Batch: 5000},
		"negative rate":    {Dst: dst, Duration: time.Second, Max: 1, Rate: -1},
		"payload too long": {Dst: dst, Duration: time.Second, Max: 1, Size: 70000},
	} {
		if res, err := l.Client.UDPBlast(ctx, b); err == nil || res.Sent != 0 {
			t.Errorf("%s: sent %d, err %v; want a refusal", name, res.Sent, err)
		}
	}
}

func TestUDPRoundTrips(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	l := New(t, Options{NoIPv6: true})
	echo := must[*UDPEcho](t)(l.Server.ServeUDPEcho(":0"))
	addr := netip.AddrPortFrom(l.Server.Addr4, echo.Port()).String()

	rt, err := l.Client.UDPRoundTrips(ctx, addr, 200, 64, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if rt.Sent != 200 || rt.Lost != 0 || len(rt.RTT) != 200 {
		t.Fatalf("sent %d, lost %d, %d round trips; want 200, 0, 200", rt.Sent, rt.Lost, len(rt.RTT))
	}
	if !slices.IsSorted(rt.RTT) || rt.RTT[0] <= 0 {
		t.Errorf("round trips not sorted or not positive: first %v", rt.RTT[0])
	}
	if p50, p100 := rt.Percentile(50), rt.Percentile(100); p50 != rt.RTT[99] || p100 != rt.RTT[199] {
		t.Errorf("p50 %v p100 %v, want %v and %v", p50, p100, rt.RTT[99], rt.RTT[199])
	}
	if echo.Count() != 200 {
		t.Errorf("echo server answered %d, want 200", echo.Count())
	}

	// Dropped requests are lost, not errors.
	if _, err := l.Router.Shell(ctx, "iptables -A FORWARD -p udp -j DROP"); err != nil {
		t.Fatal(err)
	}
	rt, err = l.Client.UDPRoundTrips(ctx, addr, 3, 8, 100*time.Millisecond)
	if err != nil || rt.Sent != 3 || rt.Lost != 3 || len(rt.RTT) != 0 || rt.Percentile(99) != 0 {
		t.Errorf("through a DROP rule: %+v, %v; want 3 sent, 3 lost", rt, err)
	}
	if _, err := l.Client.UDPRoundTrips(context.Background(), addr, 1, 8, time.Second); err == nil {
		t.Error("UDPRoundTrips without a deadline: no error")
	}
}

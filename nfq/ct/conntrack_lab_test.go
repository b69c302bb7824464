package ct

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/ti-mo/conntrack"

	"github.com/luafw/luafw/netfilter"
	"github.com/luafw/luafw/nfq/internal/labtest"
	"github.com/luafw/luafw/nfq/rules"
	"github.com/luafw/luafw/tests/lab"
)

// Root-only tests of conntrack access in a lab router.

// openIn opens a Conn inside ns, closed at cleanup.
func openIn(t testing.TB, ns *lab.NS) *Conn {
	t.Helper()
	var c *Conn
	if err := ns.Do(func() (err error) { c, err = Open(); return err }); err != nil {
		t.Fatalf("Open in %s: %v", ns, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// installRules installs rs inside ns (conntrack only tracks flows once a
// rule needs it) and removes it at cleanup.
func installRules(t *testing.T, ctx context.Context, ns *lab.NS, rs rules.Set) {
	t.Helper()
	if err := ns.Do(func() error { return rules.Install(ctx, rs) }); err != nil {
		t.Fatalf("Install in %s: %v", ns, err)
	}
	t.Cleanup(func() {
		if err := ns.Do(func() error { return rules.Remove(context.Background(), rs.Table) }); err != nil && !errors.Is(err, lab.ErrWrongNamespace) {
			t.Logf("Remove in %s: %v", ns, err)
		}
	})
}

// ruleCounters reads the diversion counters inside ns, keyed
// "fam/div/state".
func ruleCounters(t *testing.T, ctx context.Context, ns *lab.NS, table string) map[string]uint64 {
	t.Helper()
	var cs []rules.DiversionCounter
	if err := ns.Do(func() (err error) { cs, err = rules.DiversionCounters(ctx, table); return err }); err != nil {
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

// tupleOf returns the client side tuple of a TCP connection.
func tupleOf(c net.Conn) Tuple {
	la := c.LocalAddr().(*net.TCPAddr).AddrPort()
	ra := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	return Tuple{Proto: 6, Src: la.Addr().Unmap(), Dst: ra.Addr().Unmap(), SPort: la.Port(), DPort: ra.Port()}
}

func (t Tuple) reverse() Tuple {
	return Tuple{Proto: t.Proto, Src: t.Dst, Dst: t.Src, SPort: t.DPort, DPort: t.SPort}
}

// entryOf finds t's entry with the lab's own (ti-mo based) dump.
func entryOf(t *testing.T, ctx context.Context, ns *lab.NS, tu Tuple) lab.CTEntry {
	t.Helper()
	flows, err := ns.Conntrack(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range flows {
		if f.Proto == tu.Proto && f.Src == tu.Src && f.Dst == tu.Dst && f.SPort == tu.SPort && f.DPort == tu.DPort {
			return f
		}
	}
	t.Fatalf("no conntrack entry for %+v among %v", tu, flows)
	return lab.CTEntry{}
}

// echo sends a line over an echo connection and reads it back.
func echo(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
}

func TestConntrackGetUpdate(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := labtest.Context(t)
	const offload = 0x1000
	// Conntrack is on once a rule needs it; the diversion has no reader
	// (bypass), CTLabels gives new entries label storage.
	installRules(t, ctx, l.Router, rules.Set{CTLabels: true, ConnMarkOffload: offload, Diversions: []rules.Diversion{
		{Hook: netfilter.Forward, Priority: 1, ByState: true, Queues: [netfilter.NumCTStates]rules.QueueSet{{First: 0, Count: 1}, {First: 1, Count: 1}}},
	}})
	srv, err := l.Server.ServeTCP(":0")
	if err != nil {
		t.Fatal(err)
	}
	ct := openIn(t, l.Router)
	for _, fam := range []netip.Addr{l.Server.Addr4, l.Server.Addr6} {
		t.Run(fmt.Sprintf("ipv%d", map[bool]int{true: 4, false: 6}[fam.Is4()]), func(t *testing.T) {
			conn, err := l.Client.Dial(ctx, "tcp", netip.AddrPortFrom(fam, srv.Port()).String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			echo(t, conn)
			tu := tupleOf(conn)

			e, found, err := ct.Get(tu)
			if err != nil || !found {
				t.Fatalf("Get(%+v) = %v, %v, %v", tu, e, found, err)
			}
			if e.Mark != 0 || e.Reply || e.State() != netfilter.CTEstablished || e.TCPState != 3 || e.Timeout == 0 {
				t.Errorf("Get original direction = %+v (state %d), want mark 0, established, TCP state 3", e, e.State())
			}
			if e, found, err := ct.Get(tu.reverse()); err != nil || !found || !e.Reply || e.State() != netfilter.CTEstablished {
				t.Errorf("Get reply direction = %+v, %v, %v, want the entry with Reply set", e, found, err)
			}

			steps := []struct {
				u    Update
				want uint32
			}{
				{Update{Mark: 0x12, SetMark: true}, 0x12},
				{Update{Mark: 0x3ff, MarkMask: 0xf00, SetMark: true}, 0x312}, // other bits kept
				{Update{Mark: 0, MarkMask: 0xf0, SetMark: true}, 0x302},      // masked clear
				{Update{Mark: 0, SetMark: true}, 0},                          // reset to 0
			}
			for _, s := range steps {
				if err := ct.Update(tu, s.u); err != nil {
					t.Fatalf("Update(%+v): %v", s.u, err)
				}
				if got := entryOf(t, ctx, l.Router, tu).Mark; got != s.want {
					t.Errorf("after Update(%+v) the entry's mark is %#x, want %#x", s.u, got, s.want)
				}
			}
			// Through the reply tuple, with timeout and labels.
			u := Update{Mark: 7, SetMark: true, Timeout: 1234, SetTimeout: true, Labels: [2]uint64{1 << 3, 1 << 6}, SetLabels: true}
			if err := ct.Update(tu.reverse(), u); err != nil {
				t.Fatalf("Update via reply tuple: %v", err)
			}
			got := entryOf(t, ctx, l.Router, tu)
			if got.Mark != 7 || got.Timeout > 1234 || got.Timeout < 1200 {
				t.Errorf("entry %v timeout %d, want mark 7, timeout about 1234", got, got.Timeout)
			}
			var wantLabels [16]byte
			binary.NativeEndian.PutUint64(wantLabels[0:], 1<<3)
			binary.NativeEndian.PutUint64(wantLabels[8:], 1<<6)
			if string(got.Labels) != string(wantLabels[:]) {
				t.Errorf("labels %x, want %x", got.Labels, wantLabels)
			}
			if e, _, _ := ct.Get(tu); e.Labels != u.Labels || e.Mark != 7 {
				t.Errorf("Get after labels = %+v", e)
			}
			// Clear one label, keep the other.
			if err := ct.Update(tu, Update{LabelsMask: [2]uint64{1 << 3}, SetLabels: true}); err != nil {
				t.Fatal(err)
			}
			if e, _, _ := ct.Get(tu); e.Labels != [2]uint64{0, 1 << 6} {
				t.Errorf("labels after masked clear = %x, want [0 %x]", e.Labels, 1<<6)
			}

			// Offload: once the ct mark has the offload bits, the flow's
			// packets are no longer diverted.
			echo(t, conn)
			before := ruleCounters(t, ctx, l.Router, "")
			if err := ct.Update(tu, Update{Mark: offload, MarkMask: offload, SetMark: true}); err != nil {
				t.Fatal(err)
			}
			echo(t, conn)
			after := ruleCounters(t, ctx, l.Router, "")
			key := fmt.Sprintf("%d/0/established", map[bool]int{true: 4, false: 6}[fam.Is4()])
			if before[key] == 0 || after[key] != before[key] {
				t.Errorf("offloaded flow still diverted: before %v after %v", before, after)
			}
			if got := entryOf(t, ctx, l.Router, tu).Mark; got != offload|7 {
				t.Errorf("mark %#x, want %#x", got, offload|7)
			}

			// Absent entries.
			bogus := tu
			bogus.SPort++
			if err := ct.Update(bogus, Update{Mark: 1, SetMark: true}); !errors.Is(err, ErrNotFound) {
				t.Errorf("Update of a missing entry: %v, want ErrNotFound", err)
			}
			if _, found, err := ct.Get(bogus); found || err != nil {
				t.Errorf("Get of a missing entry: found %v, err %v", found, err)
			}
		})
	}
}

// Labels need storage, which only a `ct label` rule gives.
func TestConntrackLabelsNeedStorage(t *testing.T) {
	l := lab.New(t, lab.Options{NoIPv6: true})
	ctx := labtest.Context(t)
	installRules(t, ctx, l.Router, rules.Set{Families: []int{4}, Diversions: []rules.Diversion{
		{Hook: netfilter.Forward, Priority: 1, ByState: true, Queues: [netfilter.NumCTStates]rules.QueueSet{{First: 0, Count: 1}}},
	}})
	srv, err := l.Server.ServeTCP(":0")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := l.Client.Dial(ctx, "tcp", netip.AddrPortFrom(l.Server.Addr4, srv.Port()).String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	echo(t, conn)
	err = openIn(t, l.Router).Update(tupleOf(conn), Update{Labels: [2]uint64{1}, SetLabels: true})
	if !errors.Is(err, ErrNoLabelSpace) {
		t.Errorf("label update without CTLabels: %v, want ErrNoLabelSpace", err)
	}
}

// The first packet's entry is unconfirmed while the packet sits in the
// queue; the updater retries until the verdict lets it through.
func TestCTUpdaterUnconfirmedEntry(t *testing.T) {
	l := lab.New(t, lab.Options{NoIPv6: true})
	ctx := labtest.Context(t)
	installRules(t, ctx, l.Router, rules.Set{Families: []int{4}, Diversions: []rules.Diversion{
		{Hook: netfilter.Forward, Priority: 1, ByState: true, Queues: [netfilter.NumCTStates]rules.QueueSet{{First: 30, Count: 1}}, Filter: rules.Filter{Protos: []uint8{6}}},
	}})
	srv, err := l.Server.ServeTCP(":0")
	if err != nil {
		t.Fatal(err)
	}
	upd := NewUpdater(openIn(t, l.Router), 16, nil)
	uctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- upd.Run(uctx) }()
	t.Cleanup(func() { cancel(); <-done })

	tuples := make(chan Tuple, 4)
	labtest.Reader(t, l.Router, 30, func(a nfqueue.Attribute) (int, uint32, bool) {
		p := *a.Payload
		ihl := int(p[0]&0xf) * 4
		src, _ := netip.AddrFromSlice(p[12:16])
		dst, _ := netip.AddrFromSlice(p[16:20])
		tu := Tuple{Proto: p[9], Src: src, Dst: dst,
			SPort: binary.BigEndian.Uint16(p[ihl:]), DPort: binary.BigEndian.Uint16(p[ihl+2:])}
		before := upd.Stats().Retries
		upd.Submit(tu, Update{Mark: 0x77, MarkMask: 0xff, SetMark: true})
		// Hold the SYN until the updater has found the entry missing.
		for wait := time.Now().Add(5 * time.Second); upd.Stats().Retries == before && time.Now().Before(wait); {
			time.Sleep(100 * time.Microsecond)
		}
		tuples <- tu
		return nfqueue.NfAccept, 0, false
	})

	conn, err := l.Client.Dial(ctx, "tcp", netip.AddrPortFrom(l.Server.Addr4, srv.Port()).String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	echo(t, conn)
	tu := <-tuples
	if tu != tupleOf(conn) {
		t.Fatalf("queued tuple %+v, connection %+v", tu, tupleOf(conn))
	}
	for wait := time.Now().Add(5 * time.Second); upd.Stats().Applied == 0 && time.Now().Before(wait); {
		time.Sleep(time.Millisecond)
	}
	st := upd.Stats()
	if st.Applied != 1 || st.Retries == 0 || st.Failed != 0 || st.Submitted != 1 {
		t.Errorf("updater stats %+v, want 1 submitted, some retries, 1 applied, none failed", st)
	}
	if got := entryOf(t, ctx, l.Router, tu).Mark; got != 0x77 {
		t.Errorf("entry mark %#x, want 0x77", got)
	}
}

// An update whose entry never appears fails after the retry window.
func TestCTUpdaterGivesUp(t *testing.T) {
	l := lab.New(t, lab.Options{NoIPv6: true})
	ctx := labtest.Context(t)
	upd := NewUpdater(openIn(t, l.Router), 16, nil)
	uctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- upd.Run(uctx) }()
	defer func() { cancel(); <-done }()
	tu := Tuple{Proto: 17, Src: netip.MustParseAddr("10.9.9.9"), Dst: netip.MustParseAddr("10.9.9.8"), SPort: 1, DPort: 2}
	if !upd.Submit(tu, Update{Mark: 1, SetMark: true}) {
		t.Fatal("Submit refused")
	}
	for wait := time.Now().Add(5 * time.Second); upd.Stats().Failed == 0 && time.Now().Before(wait); {
		time.Sleep(time.Millisecond)
	}
	if st := upd.Stats(); st.Failed != 1 || st.Applied != 0 || st.Retries == 0 {
		t.Errorf("stats %+v, want 1 failed after retries", st)
	}
}

// createFlows creates n UDP entries inside ns with ti-mo/conntrack and
// returns their tuples.
func createFlows(b testing.TB, ns *lab.NS, n int) []Tuple {
	b.Helper()
	src, dst := netip.MustParseAddr("10.77.0.1"), netip.MustParseAddr("10.77.0.2")
	var out []Tuple
	err := ns.Do(func() error {
		c, err := conntrack.Dial(nil)
		if err != nil {
			return err
		}
		defer c.Close()
		for i := range n {
			sport := uint16(10000 + i)
			f := conntrack.NewFlow(17, 0, src, dst, sport, 53, 600, 0)
			if err := c.Create(f); err != nil {
				return fmt.Errorf("create flow %d: %w", i, err)
			}
			out = append(out, Tuple{Proto: 17, Src: src, Dst: dst, SPort: sport, DPort: 53})
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// BenchmarkConntrackUpdate: one synchronous Update (one round trip) per op.
func BenchmarkConntrackUpdate(b *testing.B) {
	l := lab.New(b, lab.Options{NoIPv6: true})
	tuples := createFlows(b, l.Router, 1)
	ct := openIn(b, l.Router)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if err := ct.Update(tuples[0], Update{Mark: uint32(n), SetMark: true}); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "updates/s")
}

// BenchmarkConntrackGet: one Get per op.
func BenchmarkConntrackGet(b *testing.B) {
	l := lab.New(b, lab.Options{NoIPv6: true})
	tuples := createFlows(b, l.Router, 1)
	ct := openIn(b, l.Router)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if _, found, err := ct.Get(tuples[0]); err != nil || !found {
			b.Fatal(found, err)
		}
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "gets/s")
}

// BenchmarkCTUpdater: Submit to an updater over 1000 entries; an op is one
// update applied.
func BenchmarkCTUpdater(b *testing.B) {
	l := lab.New(b, lab.Options{NoIPv6: true})
	tuples := createFlows(b, l.Router, 1000)
	upd := NewUpdater(openIn(b, l.Router), 8192, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- upd.Run(ctx) }()
	defer func() { cancel(); <-done }()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		for !upd.Submit(tuples[n%len(tuples)], Update{Mark: uint32(n), SetMark: true}) {
			time.Sleep(10 * time.Microsecond) // queue full: let the worker catch up
		}
		n++
	}
	for st := upd.Stats(); st.Applied+st.Failed < st.Submitted; st = upd.Stats() {
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
	st := upd.Stats()
	if st.Failed != 0 {
		b.Fatalf("stats %+v", st)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "updates/s")
	b.ReportMetric(float64(st.Sent)/b.Elapsed().Seconds(), "writes/s")
}

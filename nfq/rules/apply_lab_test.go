package rules

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/luafw/luafw/netfilter"
	"github.com/luafw/luafw/nfq/internal/labtest"

	nfqueue "github.com/florianl/go-nfqueue/v2"

	"github.com/luafw/luafw/tests/lab"
)

// heldQueue reads a queue and keeps every packet without a verdict until
// release.
type heldQueue struct {
	nf  *nfqueue.Nfqueue
	mu  sync.Mutex
	ids []uint32
}

func holdQueue(t *testing.T, ns *lab.NS, q uint16) *heldQueue {
	t.Helper()
	h := &heldQueue{}
	err := ns.Do(func() (err error) {
		h.nf, err = nfqueue.Open(&nfqueue.Config{NfQueue: q, MaxPacketLen: 0xffff, MaxQueueLen: 1024, Copymode: nfqueue.NfQnlCopyPacket})
		return err
	})
	if err != nil {
		t.Fatalf("nfqueue open %d: %v", q, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); h.nf.Close() })
	err = h.nf.RegisterWithErrorFunc(ctx, func(a nfqueue.Attribute) int {
		h.mu.Lock()
		h.ids = append(h.ids, *a.PacketID)
		h.mu.Unlock()
		return 0
	}, func(err error) int {
		if ctx.Err() != nil {
			return 1
		}
		return 0
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *heldQueue) wait(t *testing.T, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		h.mu.Lock()
		got := len(h.ids)
		h.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue holds %d packets, want %d", got, n)
		}
	}
}

// release accepts every held packet. (The kernel answers a verdict for a
// packet it flushed meanwhile with ENOENT, which go-nfqueue does not wait
// for: count what arrives instead.)
func (h *heldQueue) release(t *testing.T) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, id := range h.ids {
		if err := h.nf.SetVerdict(id, nfqueue.NfAccept); err != nil {
			t.Fatal(err)
		}
	}
	h.ids = nil
}

// Rule swaps and added chains keep the packets waiting in a queue;
// replacing the tables (what Install and every reload used to do) flushes
// them. Verify notices tables changed behind our back and Restore puts them
// back.
func TestTablesApplyKeepsQueuedPackets(t *testing.T) {
	l := lab.New(t, lab.Options{NoIPv6: true})
	ctx := labtest.Context(t)
	sink, err := l.Server.ServeUDP(":0")
	if err != nil {
		t.Fatal(err)
	}
	udp := Filter{Protos: []uint8{17}}
	a := Set{Families: []int{4}, Diversions: []Diversion{
		{Hook: netfilter.Forward, Priority: 1, Queues: [netfilter.NumCTStates]QueueSet{{30, 1}}, Filter: udp}}}
	b := Set{Families: []int{4}, Diversions: []Diversion{
		{Hook: netfilter.Forward, Priority: 1, Queues: [netfilter.NumCTStates]QueueSet{{30, 1}},
			Filter: Filter{Protos: []uint8{17}, DPorts: []uint16{sink.Port()}}}}}
	c := Set{Families: []int{4}, Diversions: []Diversion{
		{Hook: netfilter.Prerouting, Priority: -299, Queues: [netfilter.NumCTStates]QueueSet{{31, 1}}, Filter: Filter{Protos: []uint8{1}}},
		b.Diversions[0]}}
	var tables Tables
	apply := func(rs Set, want Change) {
		t.Helper()
		var got Change
		if err := l.Router.Do(func() (err error) { got, err = tables.Apply(ctx, rs); return err }); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("Apply: %v, want %v", got, want)
		}
	}
	verify := func() string {
		t.Helper()
		var diff string
		if err := l.Router.Do(func() (err error) { diff, err = tables.Verify(ctx); return err }); err != nil {
			t.Fatal(err)
		}
		return diff
	}
	t.Cleanup(func() { l.Router.Do(func() error { return tables.Remove(context.Background()) }) })
	apply(a, ChangeReplaced)
	held := holdQueue(t, l.Router, 30)
	send := func(n int) {
		t.Helper()
		if _, err := l.Client.UDPFlood(ctx, netip.AddrPortFrom(l.Server.Addr4, sink.Port()).String(), n, 16, 500); err != nil {
			t.Fatal(err)
		}
		held.wait(t, n)
	}

	send(5)
	apply(a, ChangeNone)
	apply(b, ChangeRules)
	apply(c, ChangeChains) // registers a prerouting hook
	apply(b, ChangeChains) // empties it, keeps it registered
	start := time.Now()
	for range 20 {
		if d := verify(); d != "" {
			t.Fatalf("Verify after our own changes: %s", d)
		}
	}
	t.Logf("Verify takes %v (mean of 20)", time.Since(start)/20)
	out, _ := l.Router.Run(ctx, "nft", "list", "table", "ip", "luafw")
	if !strings.Contains(out, "chain div_prerouting_m299") || strings.Contains(out, "queue num 31") {
		t.Errorf("the retired prerouting chain should stay, empty:\n%s", out)
	}
	held.release(t)
	if err := sink.WaitCount(ctx, 5); err != nil {
		t.Fatalf("held packets lost over rule swaps: %v", err)
	}

	// The old way: replacing the tables unregisters hooks, which flushes
	// every queue of the namespace.
	send(5)
	if err := l.Router.Do(func() error { return Install(ctx, b) }); err != nil {
		t.Fatal(err)
	}
	held.release(t)
	time.Sleep(300 * time.Millisecond)
	if n := sink.Count(); n != 5 {
		t.Errorf("%d held packets survived replacing the tables, want 0 (flushed with the hooks)", n-5)
	}
	if d := verify(); d == "" {
		t.Error("Verify did not notice the tables were replaced")
	}
	if err := l.Router.Do(func() error { return tables.Restore(ctx) }); err != nil {
		t.Fatal(err)
	}
	if d := verify(); d != "" {
		t.Errorf("Verify after Restore: %s", d)
	}
	for _, cmd := range []string{"nft delete table ip luafw", "nft add rule ip luafw div_forward_1 drop", "nft flush chain ip luafw div_forward_1_q"} {
		if _, err := l.Router.Shell(ctx, cmd); err != nil {
			t.Fatal(err)
		}
		if d := verify(); d == "" {
			t.Errorf("Verify did not notice %q", cmd)
		}
		if err := l.Router.Do(func() error { return tables.Restore(ctx) }); err != nil {
			t.Fatal(err)
		}
	}
	if d := verify(); d != "" {
		t.Errorf("Verify after Restore: %s", d)
	}
}

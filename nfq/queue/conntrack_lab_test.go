package queue

import (
	"context"
	"encoding/binary"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/luafw/luafw/nfq/ct"
	"github.com/luafw/luafw/tests/lab"
)

// TestQueueLabCTPackets: with conntrack accounting on (a `ct packets` rule
// loaded), queued packets carry their connection's packet count, counting
// up along a flow.
func TestQueueLabCTPackets(t *testing.T) {
	l := lab.New(t, lab.Options{NoIPv6: true})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	labRules(t, ctx, l, `nft add table ip acct
nft add chain ip acct c
nft add rule ip acct c ct packets 0 accept
iptables -A FORWARD -p udp --dport 5006 -j NFQUEUE --queue-num 8`)
	// The kernel attaches conntrack info to queued packets only once
	// ctnetlink is loaded (a conntrack socket loads it, as the daemon's does).
	if err := l.Router.Do(func() error {
		c, err := ct.Open()
		if err != nil {
			return err
		}
		return c.Close()
	}); err != nil {
		t.Fatal(err)
	}
	sink := newLabSink(t, l.Server, 5006)
	s := openIn(t, l.Router, Config{Queues: []uint16{8}, ConnTrack: true, FailOpen: true})
	if s.Info().ConnTrackRefused {
		t.Skip("this kernel sends no conntrack info with queued packets (CONFIG_NETFILTER_NETLINK_GLUE_CT off)")
	}
	var mu sync.Mutex
	var counts []uint64
	stop := serve(t, s, func(msgs []Msg, out []Verdict) {
		mu.Lock()
		defer mu.Unlock()
		for i, m := range msgs {
			n, _ := ct.PacketsOf(m.CT)
			counts = append(counts, n)
			out[i].Verdict = VerdictAccept
		}
	})
	if err := labSend(ctx, l, 5006, 0, 5); err != nil {
		t.Fatal(err)
	}
	if err := sink.waitN(ctx, 5); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("ct packets of the queued packets: %v", counts)
	for i, n := range counts {
		if n != uint64(i+1) {
			t.Fatalf("ct packets %v, want 1, 2, 3, ... along one flow", counts)
		}
	}
}

// TestQueueLabServeThenAfterVerdicts: ServeThen's sent runs once the kernel
// has acted on the burst's verdicts: the conntrack entry of a new flow,
// unconfirmed (not found) while its first packet is in the handler, exists
// when sent runs. The daemon sends its conntrack updates there.
func TestQueueLabServeThenAfterVerdicts(t *testing.T) {
	l := lab.New(t, lab.Options{NoIPv6: true})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	labRules(t, ctx, l, `iptables -A FORWARD -p udp --dport 5007 -m conntrack --ctstate NEW -j NFQUEUE --queue-num 9`)
	var c *ct.Conn
	if err := l.Router.Do(func() (err error) { c, err = ct.Open(); return err }); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sink := newLabSink(t, l.Server, 5007)
	s := openIn(t, l.Router, Config{Queues: []uint16{9}})

	var mu sync.Mutex
	var tuples []ct.Tuple
	var inHandler, inSent []bool
	lookup := func(tu ct.Tuple) bool {
		_, found, err := c.Get(tu)
		if err != nil {
			t.Errorf("conntrack get %v: %v", tu, err)
		}
		return found
	}
	sctx, scancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- s.ServeThen(sctx, func(msgs []Msg, out []Verdict) {
			mu.Lock()
			defer mu.Unlock()
			for i, m := range msgs {
				p := m.Payload
				if len(p) < 28 {
					t.Errorf("short packet %x", p)
					continue
				}
				ihl := int(p[0]&0xf) * 4
				tu := ct.Tuple{Proto: p[9], Src: netip.AddrFrom4([4]byte(p[12:16])), Dst: netip.AddrFrom4([4]byte(p[16:20])),
					SPort: binary.BigEndian.Uint16(p[ihl:]), DPort: binary.BigEndian.Uint16(p[ihl+2:])}
				tuples = append(tuples, tu)
				inHandler = append(inHandler, lookup(tu))
				out[i].Verdict = VerdictAccept
			}
		}, func() {
			mu.Lock()
			defer mu.Unlock()
			for _, tu := range tuples[len(inSent):] {
				inSent = append(inSent, lookup(tu))
			}
		})
	}()
	if err := labSend(ctx, l, 5007, 0, 1); err != nil {
		t.Fatal(err)
	}
	if err := sink.waitN(ctx, 1); err != nil {
		t.Fatal(err)
	}
	scancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(tuples) != 1 || len(inSent) != 1 {
		t.Fatalf("handler saw %d packets, sent ran for %d; want 1 and 1", len(tuples), len(inSent))
	}
	if inHandler[0] {
		t.Errorf("the entry of %v existed while its first packet was in the handler; want unconfirmed (not found)", tuples[0])
	}
	if !inSent[0] {
		t.Errorf("no entry for %v when sent ran; want it confirmed by the accept verdict", tuples[0])
	}
}

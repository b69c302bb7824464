package queue

import (
	"context"
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

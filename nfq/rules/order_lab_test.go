package rules

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/luafw/luafw/netfilter"
	"github.com/luafw/luafw/nfq/internal/labtest"

	"github.com/luafw/luafw/tests/lab"
)

// A narrowed diversion tests its matches first, but a packet that carries
// luafw's marks is still handled by them when no match admits it (a
// verdict rewrote it, or a reload changed the matches while it was
// queued): with SkipMark|RejectMark it is rejected, with SkipMark alone it
// passes undiverted; either way the tail clears the bits.
func TestRulesMarksWithoutMatch(t *testing.T) {
	l := lab.New(t, lab.Options{NoIPv6: true})
	ctx := labtest.Context(t)
	r := l.Router
	rejected, err := l.Server.ServeUDP(":0")
	if err != nil {
		t.Fatal(err)
	}
	skipped, err := l.Server.ServeUDP(":0")
	if err != nil {
		t.Fatal(err)
	}
	// Marks as a verdict would leave them, set before our chain; a probe
	// after the tail counts what leaves forward with the bits still set.
	if _, err := r.Shell(ctx, fmt.Sprintf(`
nft add table ip probe
nft add chain ip probe fwd_before '{ type filter hook forward priority -10; }'
nft add chain ip probe post '{ type filter hook postrouting priority -10; }'
nft add rule ip probe fwd_before udp dport %[1]d meta mark set 0xc0000000
nft add rule ip probe fwd_before udp dport %[2]d meta mark set 0x80000000
nft add rule ip probe post udp dport %[2]d meta mark '&' 0xc0000000 == 0 counter
`, rejected.Port(), skipped.Port())); err != nil {
		t.Fatal(err)
	}
	// Only TCP to port 1 is admitted; no reader: an admitted packet would
	// be counted by the queue rule and let through (bypass).
	installIn(t, ctx, r, Set{Families: []int{4}, Diversions: []Diversion{
		{Hook: netfilter.Forward, Priority: 0, ByState: true, Queues: [netfilter.NumCTStates]QueueSet{{40, 1}, {41, 1}},
			Matches: []Match{{Protos: []uint8{6}, DPorts: []PortRange{{1, 1}}}}},
	}})

	c, err := l.Client.Dial(ctx, "udp", netip.AddrPortFrom(l.Server.Addr4, rejected.Port()).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 10)); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("unmatched UDP with the reject mark: read error %v, want ECONNREFUSED (rejected)", err)
	}

	const n = 10
	if _, err := l.Client.UDPFlood(ctx, netip.AddrPortFrom(l.Server.Addr4, skipped.Port()).String(), n, 16, 200); err != nil {
		t.Fatal(err)
	}
	if err := skipped.WaitCount(ctx, n); err != nil {
		t.Fatalf("unmatched UDP with the skip mark: %v", err)
	}
	if got, _, err := r.NftCounter(ctx, "ip", "probe", "post", "counter"); err != nil || got != n {
		t.Errorf("%d packets left forward with the bits cleared (%v), want %d", got, err, n)
	}
	if got := rejected.Count(); got != 0 {
		t.Errorf("the rejected flow's sink received %d datagrams, want 0", got)
	}
	if cs := readCounters(t, ctx, r, DefaultTable); cs["4/0/new"]+cs["4/0/established"] != 0 {
		t.Errorf("unmatched packets were diverted: %v", cs)
	}
}

package rules

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/luafw/luafw/nfq/internal/labtest"
	"github.com/luafw/luafw/tests/lab"
)

// The bans table drops a banned source's packets in prerouting, holds
// addresses and prefixes of both families, follows adds, deletes,
// timeouts and replaces, and survives Install with another set list
// without losing the elements of the sets that stay.
func TestBanTable(t *testing.T) {
	l := lab.New(t, lab.Options{Prefix: "lfwban"})
	ctx := labtest.Context(t)
	const table = "lfwbantest"
	var b BanTable
	do := func(fn func() error) {
		t.Helper()
		if err := l.Router.Do(fn); err != nil {
			t.Fatal(err)
		}
	}
	counts := func(set string) (int, int) {
		t.Helper()
		var a, p int
		do(func() (err error) { a, p, err = BanSetCounts(ctx, table, set); return err })
		return a, p
	}
	do(func() error { return b.Install(ctx, table, []string{"one", "two"}) })
	t.Cleanup(func() { _ = l.Router.Do(func() error { return b.Remove(ctx) }) })

	if n, _ := l.Client.Ping(ctx, "10.201.2.2", 1); n != 1 {
		t.Fatalf("before any ban: %d of 1 pings answered", n)
	}
	client := netip.MustParsePrefix("10.201.1.2/32")
	do(func() error {
		return b.Update(ctx, "one", []BanElem{
			{Prefix: client},
			{Prefix: netip.MustParsePrefix("fd00:201:1::2/128"), Timeout: time.Minute},
			{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Timeout: time.Minute},
			{Prefix: netip.MustParsePrefix("2001:db8::/32")},
			{Prefix: netip.MustParsePrefix("255.255.255.0/24")}, // no end element
		}, nil)
	})
	if a, p := counts("one"); a != 2 || p != 3 {
		t.Fatalf("set one holds %d addresses, %d prefixes; want 2, 3", a, p)
	}
	if n, _ := l.Client.Ping(ctx, "10.201.2.2", 2); n != 0 {
		t.Errorf("banned client: %d of 2 pings answered", n)
	}
	if n, _ := l.Client.Ping(ctx, "fd00:201:2::2", 2); n != 0 {
		t.Errorf("banned client (IPv6): %d of 2 pings answered", n)
	}
	pk, _, err := l.Router.NftCounter(ctx, "inet", table, banChain, "one_v4 ")
	if err != nil {
		t.Fatal(err)
	}
	if pk < 2 {
		t.Errorf("drop rule of one_v4 counted %d packets, want >= 2", pk)
	}

	// The node's packets to itself (over lo) pass, even from a banned
	// address.
	own := netip.MustParsePrefix("10.201.1.1/32")
	do(func() error { return b.Update(ctx, "one", []BanElem{{Prefix: own}}, nil) })
	if n, _ := l.Router.Ping(ctx, "10.201.1.1", 1); n != 1 {
		t.Errorf("banned 10.201.1.1: the router's ping to its own address: %d of 1 answered", n)
	}
	do(func() error { return b.Update(ctx, "one", nil, []netip.Prefix{own}) })

	// Another set list keeps set one's elements and the chain.
	do(func() error { return b.Install(ctx, table, []string{"one", "three"}) })
	if a, p := counts("one"); a != 2 || p != 3 {
		t.Fatalf("after Install: set one holds %d addresses, %d prefixes; want 2, 3", a, p)
	}
	var out string
	out, err = l.Router.Run(ctx, "nft", "list", "table", "inet", table)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "two_v4") || !strings.Contains(out, "three_v6net") {
		t.Errorf("after Install with one, three:\n%s", out)
	}

	// A delete lifts the ban; a delete of what the kernel lacks fails.
	do(func() error { return b.Update(ctx, "one", nil, []netip.Prefix{client}) })
	if n, _ := l.Client.Ping(ctx, "10.201.2.2", 1); n != 1 {
		t.Errorf("after the delete: %d of 1 pings answered", n)
	}
	if err := l.Router.Do(func() error { return b.Update(ctx, "one", nil, []netip.Prefix{client}) }); err == nil {
		t.Error("deleting an absent element: no error")
	}

	// A short timeout expires in the kernel.
	do(func() error {
		return b.Update(ctx, "three", []BanElem{{Prefix: client, Timeout: 300 * time.Millisecond}}, nil)
	})
	if a, _ := counts("three"); a != 1 {
		t.Fatalf("set three holds %d addresses, want 1", a)
	}
	time.Sleep(600 * time.Millisecond)
	if a, _ := counts("three"); a != 0 {
		t.Errorf("300 ms after a 300 ms ban: set three holds %d addresses, want 0", a)
	}

	// Replace with many elements, in several transactions.
	var all []BanElem
	for i := range 5000 {
		all = append(all, BanElem{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 99, byte(i >> 8), byte(i)}), 32), Timeout: time.Hour})
	}
	do(func() error { return b.Replace(ctx, "one", all) })
	if a, p := counts("one"); a != 5000 || p != 0 {
		t.Errorf("after Replace: set one holds %d addresses, %d prefixes; want 5000, 0", a, p)
	}
	if err := l.Router.Do(func() error { return b.Update(ctx, "nosuch", all[:1], nil) }); err == nil {
		t.Error("update of a set not installed: no error")
	}
	do(func() error { return b.Remove(ctx) })
	out, _ = l.Router.Run(ctx, "nft", "list", "tables")
	if strings.Contains(out, fmt.Sprintf("inet %s", table)) {
		t.Errorf("after Remove: %s", out)
	}
}

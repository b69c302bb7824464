package tests

import (
	"context"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/luafw/luafw/tests/lab"
)

// TestDNSSinkholeOnTheRealPath: the client's resolver asks the server's
// address for a blocked name; luafw on the router answers with the
// sinkhole's address (A over IPv4, AAAA over IPv6) and the query never
// reaches the server (which runs no DNS server: any answer is luafw's).
func TestDNSSinkholeOnTheRealPath(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 60*time.Second)
	startDaemon(t, l.Router, map[string]string{
		"luafw.yaml": `plugins:
  - file: ` + dnsfilterPath(t) + `
    options:
      names: [ads.example]
      action: sinkhole
      sinkhole: {a: 10.99.99.99, aaaa: "2001:db8::99", ttl: 30}
`,
	})
	for _, tc := range []struct {
		server netip.Addr
		net    string
		want   string
	}{{l.Server.Addr4, "ip4", "10.99.99.99"}, {l.Server.Addr6, "ip6", "2001:db8::99"}} {
		r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return l.Client.Dial(ctx, "udp", net.JoinHostPort(tc.server.String(), "53"))
		}}
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ips, err := r.LookupIP(lctx, tc.net, "www.ads.example")
		cancel()
		if err != nil || len(ips) != 1 || ips[0].String() != tc.want {
			t.Errorf("lookup over %s: %v %v, want %s", tc.server, ips, err, tc.want)
		}
	}
}

func dnsfilterPath(t *testing.T) string {
	p, err := filepath.Abs(filepath.Join(pluginDir, "dnsfilter.lua"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

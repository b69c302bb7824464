package tests

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/luafw/luafw/tests/lab"
)

// TestExampleConfigRuns runs examples/all.yaml — every shipped plugin — as
// a daemon on the real path: it loads and diverts, ordinary traffic passes,
// a source its blocklist lists is dropped, and it stops cleanly.
func TestExampleConfigRuns(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 60*time.Second)
	_, self, _, _ := runtime.Caller(0)
	cfg := filepath.Join(filepath.Dir(self), "..", "examples", "all.yaml")
	d := startDaemonConfig(t, l.Router, cfg, filepath.Join(t.TempDir(), "luafw.pid"))
	serveTCP(t, l.Server, 80)
	if res := connect(ctx, l.Client, l.Server.Addr4, 80, 3*time.Second); res.Outcome != lab.Connected {
		t.Errorf("ordinary traffic through all shipped plugins: %v", res)
	}
	// 198.51.100.66 is in the example blocklist (plugins/lists): UDP from it
	// never reaches the server, UDP from the client's own address does.
	listed := netip.MustParseAddr("198.51.100.66")
	if _, err := l.Client.Shell(ctx, fmt.Sprintf("ip addr add %s/32 dev c0", listed)); err != nil {
		t.Fatal(err)
	}
	sink, err := l.Server.ServeUDP(":9300")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	dst := netip.AddrPortFrom(l.Server.Addr4, 9300).String()
	for _, src := range []netip.Addr{listed, l.Client.Addr4} {
		if _, err := l.Client.UDPBlast(ctx, lab.Blast{Dst: dst, Sources: []netip.Addr{src}, Size: 16,
			Duration: time.Second, Max: 50, Rate: 500}); err != nil {
			t.Fatal(err)
		}
	}
	sink.WaitCount(ctx, 50)
	time.Sleep(100 * time.Millisecond)
	if got := sink.Count(); got != 50 {
		t.Errorf("server received %d packets, want the 50 from the unlisted source only", got)
	}
	d.stop()
	if left := ourRules(t, ctx, l.Router); left != "" {
		t.Errorf("rules left after SIGTERM:\n%s", left)
	}
}

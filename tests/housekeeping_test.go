package tests

import (
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/luafw/luafw/tests/lab"
)

// An honest plugin that keeps a 400,000-entry allow-list in Lua, under
// steady traffic: the memory measurement runs in slices between packets,
// so no request is lost and the daemon's own pause metric stays low.
func TestLargeStateNoPauses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 400,000-entry table in the daemon")
	}
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 120*time.Second)
	d := startDaemon(t, l.Router, map[string]string{
		"luafw.yaml": "plugins:\n  - {file: allow.lua, budget: 1s}\n",
		"allow.lua": `allow = {} for i = 1, 400000 do allow["10.0." .. i] = true end
fw.register{hook = "forward", fn = function(pkt) if allow[pkt.src] then return fw.DROP end end}`,
	}, "--metrics", "127.0.0.1:0")
	echo, err := l.Server.ServeUDPEcho(l.Server.Addr4.String() + ":7007")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	addr := l.Server.Addr4.String() + ":7007"
	// The first packet builds the reader's state (its start, not a pause).
	if _, err := l.Client.UDPRoundTrips(ctx, addr, 5, 64, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	scrape(t, d) // the pause gauges start over
	// About 6 s of requests: the measurement (every second, at most 1% of
	// the time) walks the table at least once meanwhile.
	start := time.Now()
	var sent, lost int
	var worst time.Duration
	for time.Since(start) < 6*time.Second {
		rt, err := l.Client.UDPRoundTrips(ctx, addr, 500, 64, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		sent, lost = sent+rt.Sent, lost+rt.Lost
		worst = max(worst, rt.Percentile(100))
	}
	m := scrape(t, d)
	var pause float64
	for _, g := range regexp.MustCompile(`(?m)^luafw_housekeeping_pause_seconds\{worker="\d+"\} (\S+)$`).FindAllStringSubmatch(m, -1) {
		v, _ := strconv.ParseFloat(g[1], 64)
		pause = max(pause, v)
	}
	used := metricValue(m, `luafw_plugin_memory_bytes{kind="used",plugin="allow"}`)
	t.Logf("%d requests, %d lost, slowest round trip %v; longest housekeeping pause %.3f ms; state %.0f bytes", sent, lost, worst, pause*1e3, used)
	if lost != 0 {
		t.Errorf("%d of %d requests lost", lost, sent)
	}
	if used <= 40<<20 {
		t.Errorf("the state was not measured (%v bytes)", used)
	}
	if pause <= 0 || pause > 0.02 {
		t.Errorf("longest housekeeping pause %.3f ms, want (0, 20]", pause*1e3)
	}
	if worst > 100*time.Millisecond {
		t.Errorf("a round trip took %v", worst)
	}
}

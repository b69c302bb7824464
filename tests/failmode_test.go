package tests

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/luafw/luafw/tests/lab"
)

// TestFailMode: what a killed daemon's tables do with traffic. With
// fail: closed the queue rules carry no bypass, so after kill -9 the tables
// stay and the kernel drops every diverted datagram (none of N arrive,
// though the queue rules count them); a restart over the stale tables lets
// traffic flow again. With fail: open (the default) the same kill lets
// every datagram through.
func TestFailMode(t *testing.T) {
	for _, mode := range []string{"closed", "open"} {
		t.Run(mode, func(t *testing.T) { testFailMode(t, mode) })
	}
}

func testFailMode(t *testing.T, mode string) {
	const n = 200
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 90*time.Second)
	d := startDaemon(t, l.Router, map[string]string{
		"luafw.yaml": "fail: " + mode + "\nmetrics: 127.0.0.1:0\nplugins:\n  - file: drop.lua\n",
		"drop.lua":   drop23,
	})
	sink, err := l.Server.ServeUDP(":7100")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	dst := fmt.Sprintf("%s:7100", l.Server.Addr4)
	// send sends n datagrams and returns how many arrived, once all have or
	// a moment after the last was sent.
	send := func() int64 {
		t.Helper()
		before := sink.Count()
		sent, err := l.Client.UDPFlood(ctx, dst, n, 32, 2000)
		if err != nil || sent != n {
			t.Fatalf("sent %d of %d: %v", sent, n, err)
		}
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		sink.WaitCount(wctx, before+n)
		return sink.Count() - before
	}

	if got := send(); got != n {
		t.Fatalf("luafw running: %d of %d datagrams arrived", got, n)
	}
	// The metrics (served because the configuration says so) count them.
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(scrape(t, d)))
	if err != nil {
		t.Fatalf("metrics do not parse: %v", err)
	}
	var decided float64
	for _, m := range fams["luafw_packets_total"].GetMetric() {
		decided += m.GetCounter().GetValue()
	}
	if decided < n {
		t.Errorf("luafw_packets_total adds up to %v, want at least %d", decided, n)
	}
	rules := luafwRules(t, ctx, l.Router)
	if closed := !strings.Contains(rules, "bypass"); closed != (mode == "closed") {
		t.Fatalf("fail: %s, rules:\n%s", mode, rules)
	}

	d.kill()
	if after := luafwRules(t, ctx, l.Router); withoutCounters(after) != withoutCounters(rules) {
		t.Fatalf("the killed daemon's tables changed:\nbefore:\n%s\nafter:\n%s", rules, after)
	}
	queued := queueRuleCount(t, ctx, l.Router)
	got := send()
	if diverted := queueRuleCount(t, ctx, l.Router) - queued; diverted < n {
		t.Fatalf("the queue rules took %d of %d datagrams after the kill: the test's traffic missed them", diverted, n)
	}
	if mode == "closed" && got != 0 {
		t.Errorf("fail: closed, daemon killed: %d of %d datagrams arrived, want 0", got, n)
	}
	if mode == "open" && got != n {
		t.Errorf("fail: open, daemon killed: %d of %d datagrams arrived, want all", got, n)
	}

	// A restart replaces the stale tables and traffic flows again.
	d2 := startDaemonIn(t, l.Router, d.dir)
	if got := send(); got != n {
		t.Errorf("after restart: %d of %d datagrams arrived", got, n)
	}
	if res := connect(ctx, l.Client, l.Server.Addr4, 23, time.Second); res.Outcome != lab.TimedOut {
		t.Errorf("after restart: port 23 %v, want dropped (the plugin runs)", res)
	}
	d2.stop()
	if left := ourRules(t, ctx, l.Router); left != "" {
		t.Errorf("SIGTERM left rules of ours:\n%s", left)
	}
}

// luafwRules is luafw's IPv4 table.
func luafwRules(t *testing.T, ctx context.Context, ns *lab.NS) string {
	t.Helper()
	out, err := ns.Run(ctx, "nft", "list", "table", "ip", "luafw")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var ruleCounter = regexp.MustCompile(`counter packets (\d+) bytes \d+`)

func withoutCounters(rules string) string { return ruleCounter.ReplaceAllString(rules, "counter") }

// queueRuleCount sums the packet counters of luafw's IPv4 queue rules.
func queueRuleCount(t *testing.T, ctx context.Context, ns *lab.NS) int {
	t.Helper()
	total := 0
	for _, line := range strings.Split(luafwRules(t, ctx, ns), "\n") {
		if m := ruleCounter.FindStringSubmatch(line); m != nil && strings.Contains(line, "queue") {
			v, _ := strconv.Atoi(m[1])
			total += v
		}
	}
	return total
}

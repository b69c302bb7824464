package tests

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/luafw/luafw/tests/lab"
)

const drop23 = `fw.register{hook="forward", fn=function(pkt) if pkt.dport == 23 then return fw.DROP end end}`

// TestCrashBypassRestartAndCleanShutdown: with the daemon killed, traffic
// keeps flowing (queue bypass); a restart replaces the stale rules; SIGTERM
// leaves none of ours behind.
func TestCrashBypassRestartAndCleanShutdown(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 90*time.Second)
	// The operator's own rules, which luafw must leave alone.
	if _, err := l.Router.Shell(ctx, `
iptables -t filter -A FORWARD -p tcp --dport 9999 -j DROP
nft add table inet operator
nft add chain inet operator fwdchain '{ type filter hook forward priority 10; }'
nft add rule inet operator fwdchain udp dport 9998 counter drop`); err != nil {
		t.Fatal(err)
	}
	before := operatorRules(t, ctx, l.Router)
	files := map[string]string{"luafw.yaml": "plugins:\n  - file: drop.lua\n", "drop.lua": drop23}
	d := startDaemon(t, l.Router, files)
	serveTCP(t, l.Server, 23, 80)
	if res := connect(ctx, l.Client, l.Server.Addr4, 23, time.Second); res.Outcome != lab.TimedOut {
		t.Fatalf("with luafw: port 23 %v, want dropped", res)
	}

	// Traffic flowing while the daemon dies.
	sink, err := l.Server.ServeUDP(":7000")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	flood := make(chan error, 1)
	go func() {
		_, err := l.Client.UDPFlood(ctx, fmt.Sprintf("%s:7000", l.Server.Addr4), 3000, 64, 3000)
		flood <- err
	}()
	time.Sleep(300 * time.Millisecond)
	d.kill()
	before1 := sink.Count()
	time.Sleep(300 * time.Millisecond)
	if err := <-flood; err != nil {
		t.Fatal(err)
	}
	if after := sink.Count(); after <= before1 {
		t.Errorf("after the crash no packet arrived (%d before, %d after): no bypass", before1, after)
	}
	if res := connect(ctx, l.Client, l.Server.Addr4, 23, 2*time.Second); res.Outcome != lab.Connected {
		t.Errorf("with luafw dead: port 23 %v, want connected (bypass)", res)
	}
	if left := ourRules(t, ctx, l.Router); !strings.Contains(left, "luafw") {
		t.Fatalf("a crashed run should leave its tables (stale): %q", left)
	}

	// Restart over the stale tables.
	d2 := startDaemonIn(t, l.Router, d.dir)
	if !strings.Contains(d2.logs.String(), "luafw running") {
		t.Fatal("restart failed")
	}
	if res := connect(ctx, l.Client, l.Server.Addr4, 23, time.Second); res.Outcome != lab.TimedOut {
		t.Errorf("after restart: port 23 %v, want dropped", res)
	}
	if res := connect(ctx, l.Client, l.Server.Addr4, 80, 2*time.Second); res.Outcome != lab.Connected {
		t.Errorf("after restart: port 80 %v, want connected", res)
	}
	tables, _ := l.Router.Run(ctx, "nft", "list", "tables")
	if n := strings.Count(tables, "luafw"); n != 2 {
		t.Errorf("after restart: %d luafw tables, want 2 (ip and ip6):\n%s", n, tables)
	}

	d2.stop()
	if left := ourRules(t, ctx, l.Router); left != "" {
		t.Errorf("SIGTERM left rules of ours:\n%s", left)
	}
	if after := operatorRules(t, ctx, l.Router); after != before {
		t.Errorf("the operator's rules changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if res := connect(ctx, l.Client, l.Server.Addr4, 23, 2*time.Second); res.Outcome != lab.Connected {
		t.Errorf("after SIGTERM: port 23 %v, want connected", res)
	}
}

// operatorRules is the namespace's ruleset without counters and without
// luafw's tables.
func operatorRules(t *testing.T, ctx context.Context, ns *lab.NS) string {
	t.Helper()
	ipt, err := ns.Run(ctx, "iptables-save")
	if err != nil {
		t.Fatal(err)
	}
	nft, err := ns.Run(ctx, "nft", "list", "table", "inet", "operator")
	if err != nil {
		t.Fatal(err)
	}
	var keep []string
	for _, line := range strings.Split(ipt+nft, "\n") {
		if strings.HasPrefix(line, "#") || strings.Contains(line, "counter packets") {
			continue
		}
		keep = append(keep, regexp.MustCompile(`\[\d+:\d+\]`).ReplaceAllString(line, ""))
	}
	return strings.Join(keep, "\n")
}

// TestFailingPlugins: a plugin that errors or loops on every packet gives
// packets its on_error verdict; nothing stays queued; the other plugins keep
// working.
func TestFailingPlugins(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 90*time.Second)
	d := startDaemon(t, l.Router, map[string]string{
		"luafw.yaml": `plugins:
  - {file: errs.lua, on_error: drop}
  - {file: loops.lua, on_error: accept, budget: 3ms}
  - file: drop.lua
`,
		"errs.lua":  `fw.register{hook="forward", fn=function(pkt) if pkt.dport == 7001 then error("broken on purpose") end end}`,
		"loops.lua": `fw.register{hook="forward", fn=function(pkt) if pkt.dport == 7002 then while true do end end end}`,
		"drop.lua":  drop23,
	}, "--metrics", "127.0.0.1:0")
	serveTCP(t, l.Server, 7001, 7002, 23, 80)
	if res := connect(ctx, l.Client, l.Server.Addr4, 7001, time.Second); res.Outcome != lab.TimedOut {
		t.Errorf("erroring plugin with on_error drop: %v, want dropped", res)
	}
	if res := connect(ctx, l.Client, l.Server.Addr4, 7002, 3*time.Second); res.Outcome != lab.Connected {
		t.Errorf("looping plugin with on_error accept: %v, want connected (each packet cut off after 3ms)", res)
	}
	if res := connect(ctx, l.Client, l.Server.Addr4, 23, time.Second); res.Outcome != lab.TimedOut {
		t.Errorf("the other plugin stopped working: port 23 %v", res)
	}
	if res := connect(ctx, l.Client, l.Server.Addr4, 80, 2*time.Second); res.Outcome != lab.Connected {
		t.Errorf("port 80: %v", res)
	}
	// Nothing is left waiting in the kernel queues.
	out, err := l.Router.Run(ctx, "cat", "/proc/net/netfilter/nfnetlink_queue")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && f[2] != "0" {
			t.Errorf("queue %s holds %s packets without a verdict", f[0], f[2])
		}
	}
	m := scrape(t, d)
	for _, want := range []string{
		`luafw_callback_failures_total{callback="errs",hook="forward",plugin="errs",reason="error"}`,
		`luafw_callback_failures_total{callback="loops",hook="forward",plugin="loops",reason="timeout"}`,
	} {
		if v := metricValue(m, want); v < 1 {
			t.Errorf("metric %s = %v, want >= 1", want, v)
		}
	}
	if !strings.Contains(d.logs.String(), "errs.lua:1: broken on purpose") {
		t.Errorf("the error log does not name file:line")
	}
}

// scrape reads the daemon's metrics endpoint (its address is in the log).
func scrape(t *testing.T, d *daemon) string {
	t.Helper()
	code, body := getMetricsPath(t, d, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: status %d: %s", code, body)
	}
	return body
}

// getMetricsPath GETs path from the daemon's metrics listener (its address
// is in the log) and returns the status and body.
func getMetricsPath(t *testing.T, d *daemon, path string) (int, string) {
	t.Helper()
	re := regexp.MustCompile(`msg="metrics listening" addr=(\S+)`)
	deadline := time.Now().Add(5 * time.Second)
	var addr string
	for addr == "" && time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(d.logs.String()); m != nil {
			addr = m[1]
		}
		time.Sleep(20 * time.Millisecond)
	}
	if addr == "" {
		t.Fatal("no metrics address in the log")
	}
	// The endpoint listens inside the router namespace: dial it there (the
	// HTTP transport dials from goroutines of its own, so it gets the
	// lab's dialer).
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) { return d.ns.Dial(ctx, network, a) },
	}}
	resp, err := client.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func metricValue(body, series string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, series+" ") {
			v, _ := strconv.ParseFloat(strings.TrimPrefix(line, series+" "), 64)
			return v
		}
	}
	return -1
}

// TestReload: luafw reload swaps plugins without a restart; a
// broken configuration keeps the running set.
func TestReload(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 90*time.Second)
	d := startDaemon(t, l.Router, map[string]string{"luafw.yaml": "plugins:\n  - file: p.lua\n", "p.lua": drop23})
	serveTCP(t, l.Server, 23, 24)
	reload := func() {
		t.Helper()
		if out, err := l.Router.Run(ctx, luafwBinary(t), "reload"); err != nil {
			t.Fatalf("luafw reload: %v\n%s", err, out)
		}
	}
	// A broken plugin: the old one keeps dropping 23.
	writeFiles(t, d.dir, map[string]string{"p.lua": "fw.register{hook='forward', fn=function(pkt)\n  return fw.DROP\n"})
	if _, err := l.Router.Run(ctx, luafwBinary(t), "reload"); err == nil {
		t.Errorf("luafw reload of a broken plugin exited 0")
	}
	d.waitLog("reload failed", 5*time.Second)
	if !strings.Contains(d.logs.String(), "p.lua:3:") {
		t.Errorf("the failed reload does not name file:line")
	}
	if res := connect(ctx, l.Client, l.Server.Addr4, 23, time.Second); res.Outcome != lab.TimedOut {
		t.Errorf("after a failed reload: port 23 %v, want still dropped", res)
	}
	// A good one, on another hook and port: the rules follow.
	writeFiles(t, d.dir, map[string]string{"p.lua": `fw.register{hook="prerouting", priority="raw", fn=function(pkt) if pkt.dport == 24 then return fw.DROP end end}`})
	reload()
	d.waitLog("reloaded", 5*time.Second)
	if res := connect(ctx, l.Client, l.Server.Addr4, 23, 2*time.Second); res.Outcome != lab.Connected {
		t.Errorf("after reload: port 23 %v, want connected", res)
	}
	if res := connect(ctx, l.Client, l.Server.Addr4, 24, time.Second); res.Outcome != lab.TimedOut {
		t.Errorf("after reload: port 24 %v, want dropped at prerouting", res)
	}
	ruleset, _ := l.Router.Run(ctx, "nft", "list", "table", "ip", "luafw")
	// The forward chain stays, empty: deleting it would unregister its hook,
	// which flushes every queue of the namespace.
	if !strings.Contains(ruleset, "hook prerouting") || strings.Count(ruleset, "queue num") != 1 {
		t.Errorf("rules did not follow the reload (one queue rule, in prerouting):\n%s", ruleset)
	}
	d.stop()
}

// TestIPv6 runs a drop and a mark over IPv6 through the router.
func TestIPv6(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 60*time.Second)
	if _, err := l.Router.Shell(ctx, `ip6tables -t mangle -A POSTROUTING -p tcp --dport 80 -m mark --mark 0x6`); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, l.Router, map[string]string{"luafw.yaml": "plugins:\n  - file: v6.lua\n",
		"v6.lua": `fw.register{hook="forward", fn=function(pkt)
			if pkt.family ~= 6 then return end
			if pkt.dport == 23 then return fw.DROP end
			if pkt.dport == 80 then pkt:set_mark(6) end
		end}`})
	serveTCP(t, l.Server, 23, 80)
	if res := connect(ctx, l.Client, l.Server.Addr6, 23, time.Second); res.Outcome != lab.TimedOut {
		t.Errorf("IPv6 port 23: %v, want dropped", res)
	}
	if res := connect(ctx, l.Client, l.Server.Addr6, 80, 2*time.Second); res.Outcome != lab.Connected {
		t.Errorf("IPv6 port 80: %v, want connected", res)
	}
	if n, _, err := l.Router.Ip6tablesCounter(ctx, "mangle", "POSTROUTING", "0x6"); err != nil || n == 0 {
		t.Errorf("IPv6 mark counter: %d, %v", n, err)
	}
}

// TestDryRun prints the rules without root or kernel changes.
func TestDryRun(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"luafw.yaml": "plugins:\n  - file: p.lua\n", "p.lua": `
fw.register{hook="prerouting", priority="raw", fn=function() end}
fw.register{hook="prerouting", priority="filter", fn=function() end}`})
	out, err := exec.Command(luafwBinary(t), "run", "--dry-run", "--config", filepath.Join(dir, "luafw.yaml")).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"prerouting priority -299 (after raw", "prerouting priority 1 (after filter", "table ip luafw", "table ip6 luafw"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("dry run lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "luafw.pid")); err == nil {
		t.Error("dry run wrote a pidfile")
	}
}

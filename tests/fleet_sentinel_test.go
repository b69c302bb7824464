package tests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/luafw/luafw/tests/lab"
)

// TestFleetSentinelFailover runs the fleet on Redis behind Sentinel: a
// master (10.201.5.2:6380), a replica (:6381) and a sentinel (:26379) in
// the store namespace, both routers configured with the sentinel only.
// The master is killed: both routers keep deciding (an earlier ban holds
// on B), a ban made on A while there is no master reaches B once the
// sentinel has promoted the replica.
func TestFleetSentinelFailover(t *testing.T) {
	needRedis(t)
	if _, err := exec.LookPath("redis-sentinel"); err != nil {
		t.Skip("redis-sentinel not installed (scripts/deps.sh installs it)")
	}
	ctx := testCtx(t, 2*time.Minute)
	f := newFleet(t, ctx)
	f.stopRedis() // the fleet's plain one: this test runs its own
	// B reaches the master's address (announced by the sentinel) through
	// the store's other interface.
	if _, err := f.b.Shell(ctx, "ip route add 10.201.5.0/24 via 10.201.6.2\n"); err != nil {
		t.Fatal(err)
	}
	serveTCP(t, f.l.Server, 8081, 2323)
	server := func(port string, extra ...string) *exec.Cmd {
		cmd, _ := f.startStore(t, "10.201.5.2:"+port, "redis-server", append([]string{"--bind", "10.201.5.2", "--protected-mode", "no", "--port", port,
			"--requirepass", fleetPassword, "--masterauth", fleetPassword, "--repl-diskless-sync-delay", "0",
			"--save", "", "--appendonly", "no", "--dir", t.TempDir()}, extra...)...)
		return cmd
	}
	master := server("6380")
	server("6381", "--replicaof", "10.201.5.2", "6380")
	cli := func(port string, args ...string) string {
		out, _ := f.st.Shell(ctx, fmt.Sprintf("redis-cli -h 10.201.5.2 -p %s -a %s --no-auth-warning %s", port, fleetPassword, strings.Join(args, " ")))
		return out
	}
	waitFor := func(what string, limit time.Duration, cond func() bool) time.Duration {
		t.Helper()
		begin := time.Now()
		for !cond() {
			if time.Since(begin) > limit {
				t.Fatalf("%s: not within %v", what, limit)
			}
			time.Sleep(50 * time.Millisecond)
		}
		return time.Since(begin)
	}
	waitFor("the replica syncs", 20*time.Second, func() bool { return strings.Contains(cli("6381", "info", "replication"), "master_link_status:up") })
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`port 26379
bind 10.201.5.2 10.201.6.2
protected-mode no
dir %s
sentinel monitor fleet 10.201.5.2 6380 1
sentinel auth-pass fleet %s
sentinel down-after-milliseconds fleet 500
sentinel failover-timeout fleet 5000
`, dir, fleetPassword)), 0o600); err != nil {
		t.Fatal(err)
	}
	f.startStore(t, "10.201.5.2:26379", "redis-sentinel", conf)
	sentinel := func(args ...string) string {
		out, _ := f.st.Shell(ctx, "redis-cli -h 10.201.5.2 -p 26379 "+strings.Join(args, " "))
		return out
	}
	waitFor("the sentinel knows the replica", 20*time.Second, func() bool {
		return strings.Contains(sentinel("sentinel", "replicas", "fleet"), "6381")
	})

	config := func(sentinelAddr string) map[string]string {
		files := fleetConfig("unused:1")
		files["luafw.yaml"] = strings.Replace(files["luafw.yaml"], `redis: {addrs: ["unused:1"], password: `+fleetPassword+`}`,
			`redis: {password: `+fleetPassword+`, sentinel: {addrs: ["`+sentinelAddr+`"], master: fleet}}`, 1)
		return files
	}
	dA := startDaemon(t, f.l.Router, config("10.201.5.2:26379"))
	dB := startDaemon(t, f.b, config("10.201.6.2:26379"))
	_ = dA
	connected := func(ns *lab.NS) func() bool {
		return func() bool { st := status(t, ctx, ns); return st.Backend != nil && st.Backend.Connected }
	}
	waitFor("A connects through the sentinel", 10*time.Second, connected(f.l.Router))
	waitFor("B connects through the sentinel", 10*time.Second, connected(f.b))
	time.Sleep(3 * fleetInterval)

	dialFrom(ctx, f.l.Client, viaA+":2323", 300*time.Millisecond) // banned on A
	waitFor("the ban reaches B", 10*time.Second, func() bool { return !dialFrom(ctx, f.l.Client, viaB+":8081", 300*time.Millisecond) })
	cli("6380", "wait", "1", "2000")

	killed := time.Now()
	_ = master.Process.Kill()
	dB.waitLog("redis unreachable", 10*time.Second)
	// No master: B still enforces what it knew, A still bans.
	if dialFrom(ctx, f.l.Client, viaB+":8081", 300*time.Millisecond) {
		t.Error("master down: B forgot the ban")
	}
	if _, err := f.l.Client.Shell(ctx, "ip addr add 10.201.9.3/32 dev lo"); err != nil {
		t.Fatal(err)
	}
	bctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	if c, err := f.l.Client.DialFrom(bctx, "tcp", "10.201.9.3:0", viaA+":2323"); err == nil { // banned on A while there is no master
		c.Close()
	}
	cancel()
	took := waitFor("the ban made during the failover reaches B", 30*time.Second, func() bool {
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		c, err := f.l.Client.DialFrom(cctx, "tcp", "10.201.9.3:0", viaB+":8081")
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	if m := sentinel("sentinel", "get-master-addr-by-name", "fleet"); !strings.Contains(m, "6381") {
		t.Errorf("the sentinel's master: %q; want the replica, :6381", m)
	}
	waitFor("B reconnects", 10*time.Second, connected(f.b))
	t.Logf("master killed: a ban made on A without a master enforced on B %v after the kill (%v after the ban); both decided throughout",
		time.Since(killed).Round(time.Millisecond), took.Round(time.Millisecond))
}

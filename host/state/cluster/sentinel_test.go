package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/luafw/luafw/host/state"
)

// freePort returns a loopback TCP port nothing listens on.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startProc starts a Redis program that dies with the test binary, and
// returns it (killed at cleanup).
func startProc(t *testing.T, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// TestSentinelFailover runs a master, a replica and a sentinel (Debian's
// redis-server and redis-sentinel, password-protected, on loopback ports
// of the test's own) under two nodes configured with the sentinel only.
// The master is killed: both nodes keep deciding on local state while the
// sentinel promotes the replica, then reconnect to it, send what they
// wrote meanwhile, and converge on it.
func TestSentinelFailover(t *testing.T) {
	if _, err := exec.LookPath("redis-sentinel"); err != nil {
		t.Skip("redis-sentinel not installed (scripts/deps.sh installs it)")
	}
	startRedis(t).stop() // skips without redis-server
	const pw = "sentinel-test-secret"
	pm, pr, ps := freePort(t), freePort(t), freePort(t)
	common := func(port int) []string {
		return []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", t.TempDir(), "--requirepass", pw, "--masterauth", pw, "--repl-diskless-sync-delay", "0"}
	}
	master := startProc(t, "redis-server", common(pm)...)
	startProc(t, "redis-server", append(common(pr), "--replicaof", "127.0.0.1", strconv.Itoa(pm))...)
	// The sentinel learns of the replica from the master's INFO when it
	// first connects (else up to 10 s later): start it once they are linked.
	rc := redisAt{addr: fmt.Sprintf("127.0.0.1:%d", pr), password: pw}.client()
	defer rc.Close()
	eventually(t, 20*time.Second, "the replica syncs", func() bool {
		info, err := rc.Info(context.Background(), "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up")
	})
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`port %d
bind 127.0.0.1
dir %s
sentinel monitor fleet 127.0.0.1 %d 1
sentinel auth-pass fleet %s
sentinel down-after-milliseconds fleet 500
sentinel failover-timeout fleet 5000
`, ps, dir, pm, pw)), 0o600); err != nil {
		t.Fatal(err)
	}
	startProc(t, "redis-sentinel", conf)
	ctx := context.Background()
	sen := redis.NewSentinelClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", ps), DisableIdentity: true})
	defer sen.Close()
	eventually(t, 20*time.Second, "the sentinel knows the replica", func() bool {
		rs, err := sen.Replicas(ctx, "fleet").Result()
		return err == nil && len(rs) == 1 && rs[0]["flags"] == "slave" && rs[0]["master-link-status"] == "ok"
	})

	prefix := "sentinel:"
	node := func(name string) *Store {
		s, err := New(Options{Addrs: []string{fmt.Sprintf("127.0.0.1:%d", ps)}, MasterName: "fleet", Password: pw,
			Prefix: prefix, Node: name})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		eventually(t, 10*time.Second, name+" connects through the sentinel", connected(s))
		return s
	}
	a, b := node("a"), node("b")
	ma, mb := a.Map("bans").(*Map), b.Map("bans").(*Map)
	for i := range 500 {
		_ = ma.Set(fmt.Sprintf("before%d", i), state.BoolValue(true), time.Hour)
	}
	oldMaster := redisAt{addr: fmt.Sprintf("127.0.0.1:%d", pm), password: pw}
	converge(t, oldMaster, prefix, "bans", 10*time.Second, ma, mb)
	mc := oldMaster.client()
	if n, err := mc.Do(ctx, "WAIT", 1, 5000).Int(); err != nil || n != 1 { // the replica has it all
		t.Fatalf("WAIT for the replica: %d, %v", n, err)
	}
	mc.Close()

	killed := time.Now()
	_ = master.Process.Kill()
	// The fleet keeps deciding: writes and reads on local copies never
	// wait for Redis.
	written := 0
	for !(a.Stats().Connected && b.Stats().Connected && a.Stats().LastSync.After(killed.Add(time.Second)) &&
		b.Stats().LastSync.After(killed.Add(time.Second))) {
		if time.Since(killed) > 30*time.Second {
			t.Fatalf("no failover within 30s: a %+v, b %+v", a.Stats(), b.Stats())
		}
		key := fmt.Sprintf("during%d", written)
		start := time.Now()
		_ = ma.Set(key, state.BoolValue(true), time.Hour)
		_ = mb.Set(key+"b", state.BoolValue(true), time.Hour)
		// A write goes to the local copy and a queue: it must not wait for
		// the failover (seconds). A second leaves room for a loaded machine.
		if _, ok := ma.Get(key); !ok || time.Since(start) > time.Second {
			t.Fatalf("a write during the failover waited %v or was lost", time.Since(start))
		}
		written++
		time.Sleep(10 * time.Millisecond)
	}
	failover := time.Since(killed)
	addr, err := sen.GetMasterAddrByName(ctx, "fleet").Result()
	if err != nil || addr[1] != strconv.Itoa(pr) {
		t.Fatalf("the sentinel's master is %v (%v); want the replica on port %d", addr, err, pr)
	}
	newMaster := redisAt{addr: fmt.Sprintf("127.0.0.1:%d", pr), password: pw}
	took := converge(t, newMaster, prefix, "bans", 20*time.Second, ma, mb)
	if n := len(contents(ma)); n != 500+2*written {
		t.Errorf("converged on %d keys; want %d (500 before, %d written on each node during the failover)", n, 500+2*written, written)
	}
	t.Logf("master killed: both nodes synced with the promoted replica %v later (down-after 500ms), %d writes on each meanwhile; converged %v after that",
		failover.Round(time.Millisecond), written, took.Round(time.Millisecond))
}

package cluster

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// testRedis is a redis-server on loopback that a test can stop and start.
type testRedis struct {
	t    testing.TB
	addr string
	port int
	cmd  *exec.Cmd
}

// startRedis starts Debian's redis-server on a free loopback port, or
// skips the test when it is not installed (scripts/deps.sh installs it).
func startRedis(t testing.TB) *testRedis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed (scripts/deps.sh installs it)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	r := &testRedis{t: t, port: port, addr: "127.0.0.1:" + strconv.Itoa(port)}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *testRedis) start() {
	r.t.Helper()
	r.cmd = exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.t.TempDir(), "--protected-mode", "yes")
	// A test binary killed by its timeout must not leave the server behind.
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: r.addr, DisableIdentity: true})
	defer c.Close()
	for i := 0; ; i++ {
		if c.Ping(context.Background()).Err() == nil {
			return
		}
		if i == 100 {
			r.t.Fatalf("redis-server on %s did not answer", r.addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *testRedis) stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

// newNode returns a Store on r under a prefix of the test's own.
func newNode(t testing.TB, r *testRedis, name string, mod func(*Options)) *Store {
	t.Helper()
	o := Options{Addrs: []string{r.addr}, Prefix: fmt.Sprintf("t%d:", r.port), Node: name}
	if mod != nil {
		mod(&o)
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// eventually polls cond every millisecond for up to limit and returns how
// long it took, failing the test if it never held.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}

func connected(s *Store) func() bool { return func() bool { return s.Stats().Connected } }

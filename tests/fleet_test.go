package tests

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/luafw/luafw/tests/lab"
)

// The fleet tests run luafw on two routers that share state through one
// redis-server, all inside lab namespaces:
//
//	           ┌ router (A) ┐                 10.201.9.2 on the client's lo is
//	client ────┤            ├──── server      the source both paths share;
//	           └ routerb (B)┘                 via A: 10.201.2.2, via B: 10.201.4.2
//	     A ── store (redis-server) ── B       A: 10.201.5.2:6379, B: 10.201.6.2:6379

const fleetPlugin = `
local bans = state.map("bans", {scope = "cluster"})
local conns = state.bucket("conns", {rate = fw.options.rate, burst = fw.options.burst, scope = "cluster"})
fw.register{hook = "forward", fn = function(pkt)
	if pkt.proto ~= "tcp" or not pkt.tcp.syn or pkt.tcp.ack then return end
	if pkt.dport == 2323 then
		bans:set(pkt.src, true, 600)
		return fw.DROP
	end
	if bans:get(pkt.src) then return fw.DROP end
	-- 8080 is rate-limited cluster-wide; 8081 is not (the ban checks use it)
	if pkt.dport == 8080 and not conns:take("all") then return fw.DROP end
end}
`

const (
	fleetRate, fleetBurst = 20.0, 5.0
	fleetInterval         = 100 * time.Millisecond
	fleetSrc              = "10.201.9.2"
	fleetPassword         = "fleet-test-secret"
	viaA, viaB            = "10.201.2.2", "10.201.4.2"
)

type fleet struct {
	l     *lab.Lab
	b, st *lab.NS
	stop  func() // ends the fleet's redis-server (startStore), nil when none runs
}

func needRedis(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed (scripts/deps.sh installs it)")
	}
}

// newFleet builds the topology above.
func newFleet(t *testing.T, ctx context.Context) *fleet {
	t.Helper()
	l := lab.New(t, lab.Options{NoIPv6: true})
	f := &fleet{l: l}
	var err error
	if f.b, err = l.AddNS(ctx, "routerb"); err != nil {
		t.Fatal(err)
	}
	if f.st, err = l.AddNS(ctx, "store"); err != nil {
		t.Fatal(err)
	}
	for _, k := range [][7]any{
		{l.Client, "c1", "10.201.3.2/24", f.b, "rb0", "10.201.3.1/24"},
		{f.b, "rb1", "10.201.4.1/24", l.Server, "s1", "10.201.4.2/24"},
		{l.Router, "ra2", "10.201.5.1/24", f.st, "st0", "10.201.5.2/24"},
		{f.b, "rb2", "10.201.6.1/24", f.st, "st1", "10.201.6.2/24"},
	} {
		if err := l.Link(ctx, k[0].(*lab.NS), k[1].(string), k[2].(string), k[3].(*lab.NS), k[4].(string), k[5].(string)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.b.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
	for ns, script := range map[*lab.NS]string{
		l.Client: "ip addr add " + fleetSrc + "/32 dev lo\nip route add 10.201.4.0/24 via 10.201.3.1\n",
		l.Router: "ip route add 10.201.9.0/24 via 10.201.1.2\n",
		f.b:      "ip route add 10.201.9.0/24 via 10.201.3.2\n",
		// Replies from the address behind B go back through B.
		l.Server: "sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.s1.rp_filter=0\n" +
			"ip rule add from 10.201.4.2 table 100\nip route add default via 10.201.4.1 table 100\n",
	} {
		if _, err := ns.Shell(ctx, script); err != nil {
			t.Fatal(err)
		}
	}
	f.startRedis(t)
	t.Cleanup(f.stopRedis)
	return f
}

// startRedis starts redis-server with the fleet's password.
func (f *fleet) startRedis(t *testing.T) {
	t.Helper()
	f.startRedisArgs(t, "--requirepass", fleetPassword)
}

// startRedisOpen starts redis-server without a password.
func (f *fleet) startRedisOpen(t *testing.T) {
	t.Helper()
	f.startRedisArgs(t)
}

func (f *fleet) startRedisArgs(t *testing.T, extra ...string) {
	t.Helper()
	args := append([]string{"--bind", "10.201.5.2", "10.201.6.2", "--protected-mode", "no",
		"--port", "6379", "--save", "", "--appendonly", "no", "--dir", t.TempDir()}, extra...)
	// Listening is enough: the password is the daemons' business.
	_, f.stop = f.startStore(t, "10.201.5.2:6379", "redis-server", args...)
}

// startStore starts a server in the fleet's store namespace and, when
// listen is not empty, waits (up to 5 s) until it accepts TCP there. stop
// ends it and waits for it; it runs at most once, and at cleanup.
func (f *fleet) startStore(t *testing.T, listen, name string, args ...string) (cmd *exec.Cmd, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd, err := f.st.Command(ctx, name, args...)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); _ = cmd.Wait() }) }
	t.Cleanup(stop)
	for i := 0; listen != ""; i++ {
		c, err := f.st.Dial(ctx, "tcp", listen)
		if err == nil {
			c.Close()
			break
		}
		if i == 100 {
			stop()
			t.Fatalf("%s did not listen on %s: %v", name, listen, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cmd, stop
}

func (f *fleet) stopRedis() {
	if f.stop != nil {
		f.stop()
		f.stop = nil
	}
}

func fleetConfig(redisAddr string) map[string]string {
	return map[string]string{
		"fleet.lua": fleetPlugin,
		"luafw.yaml": fmt.Sprintf(`plugins:
  - file: fleet.lua
    options: {rate: %v, burst: %v}
divert:
  forward: {protos: [tcp]}
%s  fallback_share: 0.5
`, fleetRate, fleetBurst, fleetState(redisAddr)),
	}
}

// fleetState is the configuration's state section for a fleet daemon
// reaching Redis at redisAddr with the fleet's password and interval.
func fleetState(redisAddr string) string {
	return fmt.Sprintf("state:\n  backend: redis\n  redis: {addrs: [\"%s\"], password: %s}\n  sync_interval: %v\n",
		redisAddr, fleetPassword, fleetInterval)
}

// dialFrom tries one connection from the shared source address.
func dialFrom(ctx context.Context, ns *lab.NS, dst string, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := ns.DialFrom(ctx, "tcp", fleetSrc+":0", dst)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// hammer opens new connections to port 8080 through both routers from
// several workers each for d, and returns how many the server accepted
// (counted there: on a loaded machine a client may give up on a
// connection the routers let through).
func hammer(ctx context.Context, client *lab.NS, srv *lab.TCPServer, d time.Duration) (int64, time.Duration) {
	before := srv.Count()
	var wg sync.WaitGroup
	start := time.Now()
	for _, dst := range []string{viaA, viaB} {
		for range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Since(start) < d && ctx.Err() == nil {
					client.TCPConnect(ctx, net.JoinHostPort(dst, "8080"), 200*time.Millisecond)
				}
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	time.Sleep(300 * time.Millisecond) // connections still completing
	return srv.Count() - before, elapsed
}

// TestFleetSharesState: a ban on router A reaches router B within two
// sync intervals; a cluster-wide limit holds across both within the
// documented error; with Redis down both keep filtering on local state
// with the fallback share, and converge when it returns.
func TestFleetSharesState(t *testing.T) {
	needRedis(t)
	ctx := testCtx(t, 3*time.Minute)
	f := newFleet(t, ctx)
	serveTCP(t, f.l.Server, 8081, 2323)
	limited, err := f.l.Server.ServeTCP(":8080")
	if err != nil {
		t.Fatal(err)
	}
	defer limited.Close()
	dA := startDaemon(t, f.l.Router, fleetConfig("10.201.5.2:6379"))
	dB := startDaemon(t, f.b, fleetConfig("10.201.6.2:6379"))
	// Both up: the sync loop is connected once a ban passes; give the
	// subscriptions a moment first.
	time.Sleep(5 * fleetInterval)

	if !dialFrom(ctx, f.l.Client, viaB+":8081", time.Second) {
		t.Fatal("before any ban: the shared source cannot connect through B")
	}
	// Ban through A (the honeypot port), then try B two intervals later.
	start := time.Now()
	go dialFrom(ctx, f.l.Client, viaA+":2323", 300*time.Millisecond)
	time.Sleep(2*fleetInterval - time.Since(start))
	if dialFrom(ctx, f.l.Client, viaB+":8081", 300*time.Millisecond) {
		t.Fatalf("banned on A, still let through B %v later", time.Since(start))
	}
	if res := connect(ctx, f.l.Client, f.l.Server.Addr4, 8080, time.Second); res.Outcome != lab.Connected {
		t.Fatalf("an unbanned source through A: %v", res)
	}

	// The cluster-wide limit: 20 new connections/s, burst 5, across both.
	time.Sleep(time.Second) // the bucket refills
	got, elapsed := hammer(ctx, f.l.Client, limited, 3*time.Second)
	d := 3 * fleetInterval // sync interval plus delivery, with room for a loaded machine
	bound := fleetRate*(elapsed.Seconds()+d.Seconds()) + 2*fleetBurst
	t.Logf("cluster limit %v/s burst %v: %d connections in %v through both routers (%.1f/s; bound %.0f, exact %.0f)",
		fleetRate, fleetBurst, got, elapsed, float64(got)/elapsed.Seconds(), bound, fleetRate*elapsed.Seconds()+fleetBurst)
	if float64(got) > bound {
		t.Errorf("cluster-wide limit: %d connections > bound %.0f", got, bound)
	}
	if float64(got) < fleetRate*elapsed.Seconds()/2 {
		t.Errorf("cluster-wide limit: only %d connections: the routers over-charge each other", got)
	}

	// Redis down: both keep deciding, the old ban holds, each router
	// allows half the limit alone.
	f.stopRedis()
	dA.waitLog("redis unreachable", 15*time.Second)
	dB.waitLog("redis unreachable", 15*time.Second)
	if dialFrom(ctx, f.l.Client, viaB+":8081", 300*time.Millisecond) {
		t.Error("Redis down: B forgot the ban")
	}
	time.Sleep(time.Second)
	got, elapsed = hammer(ctx, f.l.Client, limited, 2*time.Second)
	bound = 2 * 0.5 * (fleetRate*elapsed.Seconds() + fleetBurst)
	t.Logf("Redis down, fallback share 0.5: %d connections in %v through both (bound %.0f)", got, elapsed, bound)
	if float64(got) > bound+2 {
		t.Errorf("Redis down: %d connections > fallback bound %.0f", got, bound)
	}
	if got == 0 {
		t.Error("Redis down: nothing passes; the fallback limit should let some through")
	}
	// A ban while Redis is down stays on A, and reaches B when it returns.
	if _, err := f.l.Client.Shell(ctx, "ip addr add 10.201.9.3/32 dev lo"); err != nil {
		t.Fatal(err)
	}
	second := func(dst string, timeout time.Duration) bool {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		c, err := f.l.Client.DialFrom(ctx, "tcp", "10.201.9.3:0", dst)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	second(viaA+":2323", 300*time.Millisecond)
	if !second(viaB+":8081", time.Second) {
		t.Error("Redis down: a ban on A reached B without Redis?")
	}
	f.startRedis(t)
	dA.waitLog("redis reachable again", 20*time.Second)
	dB.waitLog("redis reachable again", 20*time.Second)
	converged := false
	for deadline := time.Now().Add(15 * time.Second); !converged && time.Now().Before(deadline); {
		converged = !second(viaB+":8081", 300*time.Millisecond)
		time.Sleep(fleetInterval)
	}
	if !converged {
		t.Error("after Redis returned: the ban made on A during the outage never reached B")
	}
	if !strings.Contains(dA.logs.String(), "reconciled") {
		t.Error("A did not log the reconciliation")
	}
}

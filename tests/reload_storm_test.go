package tests

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/luafw/luafw/tests/lab"
)

// Reload storm: while UDP datagrams (each with a sequence number) and a
// stream of TCP connections cross the router, luafw there is reloaded ~50
// times, alternating good reloads (script-only changes, a divert filter that
// changes the rules inside the chains, a plugin that adds and removes a
// segment) with broken ones (a Lua syntax error). Nothing may be lost, no
// connection may fail, and a broken reload must keep the running set.
const (
	stormMaxSent = 40000 // at stormRate: 20 s of traffic at most
	stormRate    = 2000  // datagrams per second
	stormReloads = 50
	stormUDPPort = 7000
	stormCanary  = 7001 // every good plugin version drops this port
	stormTCPPort = 8080
)

// stormPlugin is good version v of the plugin: it drops the canary port.
func stormPlugin(v int) string {
	return fmt.Sprintf(`local version = %d
fw.register{hook="forward", fn=function(pkt)
  if pkt.dport == %d then return fw.DROP end
end}
`, v, stormCanary)
}

// stormFiles is the configuration of reload i, in a cycle of eight: a
// script-only change (no kernel change), broken, another divert filter
// (rules swapped in place), broken, a plugin in a new segment (chains
// added), broken, the segment gone and the first filter back (chains
// emptied, rules swapped), a script-only change.
func stormFiles(i int) map[string]string {
	cfg := "budget: 1s\nplugins:\n  - file: p.lua\n"
	divA := "divert:\n  forward: {protos: [tcp, udp]}\n"
	divB := "divert:\n  forward: {protos: [tcp, udp, icmp]}\n"
	files := map[string]string{"luafw.yaml": cfg + divA, "p.lua": stormPlugin(i), "raw.lua": stormRaw}
	switch i % 8 {
	case 2:
		files["luafw.yaml"] = cfg + divB
	case 4:
		files["luafw.yaml"] = cfg + "  - file: raw.lua\n" + divB
	}
	if stormBroken(i) {
		delete(files, "luafw.yaml") // keep the running configuration
		files["p.lua"] += "fw.register{hook='forward', fn=function(pkt)\n"
	}
	return files
}

func stormBroken(i int) bool { return i%8 == 1 || i%8 == 3 || i%8 == 5 }

// stormRaw is a plugin at raw priority in prerouting: a segment of its own.
const stormRaw = `fw.register{hook="prerouting", priority="raw", fn=function(pkt) end}`

func TestReloadStormLosesNothing(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 60*time.Second)
	d := startDaemon(t, l.Router, stormFiles(0))
	serveTCP(t, l.Server, stormTCPPort)
	sink := startSeqSink(t, l.Server, stormUDPPort)
	snmpBefore := tcpRetrans(t, ctx, l.Client)

	trafficCtx, stopTraffic := context.WithTimeout(ctx, 30*time.Second)
	defer stopTraffic()
	var wg sync.WaitGroup
	var sent int
	var sendErr error
	stormDone := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		sent, sendErr = sendSeq(trafficCtx, stormDone, l.Client, netip.AddrPortFrom(l.Server.Addr4, stormUDPPort), stormMaxSent, stormRate)
	}()
	var tcpOK, tcpFailed atomic.Int64
	var tcpFailures sync.Map
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stormDone:
				return
			case <-time.After(25 * time.Millisecond):
			}
			res := connect(trafficCtx, l.Client, l.Server.Addr4, stormTCPPort, 5*time.Second)
			if res.Outcome == lab.Connected {
				tcpOK.Add(1)
			} else {
				tcpFailed.Add(1)
				tcpFailures.Store(i, res.String())
			}
		}
	}()

	// The storm: each reload waits for the daemon's verdict on it.
	good, broken := 0, 0
	for i := 1; i <= stormReloads; i++ {
		time.Sleep(150 * time.Millisecond)
		files := stormFiles(i)
		writeFiles(t, d.dir, files)
		wantGood, wantBroken := good, broken
		if stormBroken(i) {
			wantBroken++
		} else {
			wantGood++
		}
		if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			logs := d.logs.String()
			good, broken = strings.Count(logs, `msg=reloaded`), strings.Count(logs, `msg="reload failed`)
			if good == wantGood && broken == wantBroken {
				break
			}
			if good > wantGood || broken > wantBroken || time.Now().After(deadline) {
				t.Fatalf("reload %d: %d good and %d failed reloads logged, want %d and %d", i, good, broken, wantGood, wantBroken)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Traffic stops with the storm; the last datagrams get time to arrive.
	time.Sleep(200 * time.Millisecond)
	close(stormDone)
	wg.Wait()
	if sendErr != nil {
		t.Fatalf("UDP sender: %v", sendErr)
	}
	for !sinkQuietFor(sink, 500*time.Millisecond) && sink.count() < int64(sent) {
	}
	received, missing := sink.result(sent)
	retrans := tcpRetrans(t, ctx, l.Client) - snmpBefore
	t.Logf("reloads: %d good, %d broken; UDP sent %d, received %d, lost %d (%.2f per good reload); TCP %d connected, %d failed, %d client retransmissions",
		good, broken, sent, received, missing, float64(missing)/float64(max(good, 1)), tcpOK.Load(), tcpFailed.Load(), retrans)
	if missing != 0 {
		t.Errorf("%d of %d datagrams lost during the reload storm", missing, sent)
	}
	if n := tcpFailed.Load(); n != 0 {
		tcpFailures.Range(func(k, v any) bool { t.Logf("TCP connection %v: %v", k, v); return true })
		t.Errorf("%d of %d TCP connections failed during the reload storm", n, n+tcpOK.Load())
	}
	if tcpOK.Load() == 0 {
		t.Error("no TCP connection was made during the storm")
	}
	// Each kind of good reload took its path: no kernel change for script
	// edits, rules swapped for the divert filter, chains for the new segment.
	kinds := map[string]int{}
	for _, m := range regexp.MustCompile(`msg=reloaded .*kernel=(?:"([^"]+)"|(\S+))`).FindAllStringSubmatch(d.logs.String(), -1) {
		kinds[m[1]+m[2]]++
	}
	t.Logf("kernel changes by reload: %v", kinds)
	for _, k := range []string{"none", "rules swapped", "chains added or emptied"} {
		if kinds[k] == 0 {
			t.Errorf("no reload logged kernel=%q: %v", k, kinds)
		}
	}

	// After one more broken reload the running plugin still drops the
	// canary port.
	writeFiles(t, d.dir, map[string]string{"p.lua": "fw.register{hook='forward', fn=function(pkt)\n"})
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitCountIn(t, d, `msg="reload failed`, broken+1)
	canary, err := l.Server.ServeUDP(fmt.Sprintf(":%d", stormCanary))
	if err != nil {
		t.Fatal(err)
	}
	defer canary.Close()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := l.Client.UDPFlood(cctx, fmt.Sprintf("%s:%d", l.Server.Addr4, stormCanary), 50, 16, 500); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if n := canary.Count(); n != 0 {
		t.Errorf("after the broken reloads %d datagrams reached the canary port: the running plugin was lost", n)
	}
	d.stop()
}

// waitCountIn waits until the daemon's log has n occurrences of s.
func waitCountIn(t *testing.T, d *daemon, s string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(d.logs.String(), s) < n {
		if time.Now().After(deadline) {
			t.Fatalf("luafw logged %q %d times, want %d", s, strings.Count(d.logs.String(), s), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// seqSink records which sequence numbers arrived.
type seqSink struct {
	pc   net.PacketConn
	mu   sync.Mutex
	seen map[uint64]bool
	n    atomic.Int64
	last atomic.Int64 // unix nanos of the last datagram
}

func startSeqSink(t *testing.T, ns *lab.NS, port int) *seqSink {
	t.Helper()
	pc, err := ns.ListenPacket("udp4", ":"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	_ = pc.(*net.UDPConn).SetReadBuffer(4 << 20)
	s := &seqSink{pc: pc, seen: map[uint64]bool{}}
	s.last.Store(time.Now().UnixNano())
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < 8 {
				continue
			}
			s.mu.Lock()
			s.seen[binary.BigEndian.Uint64(buf)] = true
			s.mu.Unlock()
			s.n.Add(1)
			s.last.Store(time.Now().UnixNano())
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return s
}

func (s *seqSink) count() int64 { return s.n.Load() }

// result counts distinct sequence numbers below sent that arrived.
func (s *seqSink) result(sent int) (received, missing int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i < sent; i++ {
		if s.seen[uint64(i)] {
			received++
		}
	}
	return received, sent - received
}

// sinkQuietFor sleeps a little and reports whether nothing arrived for d.
func sinkQuietFor(s *seqSink, d time.Duration) bool {
	time.Sleep(20 * time.Millisecond)
	return time.Since(time.Unix(0, s.last.Load())) > d
}

// sendSeq sends datagrams carrying their sequence number, at rate per
// second, from ns to dst until stop closes (or count are sent).
func sendSeq(ctx context.Context, stop <-chan struct{}, ns *lab.NS, dst netip.AddrPort, count, rate int) (int, error) {
	pc, err := ns.ListenPacket("udp4", ":0")
	if err != nil {
		return 0, err
	}
	defer pc.Close()
	conn := pc.(*net.UDPConn)
	buf := make([]byte, 64)
	start := time.Now()
	for i := 0; i < count; i++ {
		if due := start.Add(time.Duration(i) * time.Second / time.Duration(rate)); time.Until(due) > time.Millisecond {
			select {
			case <-ctx.Done():
				return i, ctx.Err()
			case <-stop:
				return i, nil
			case <-time.After(time.Until(due)):
			}
		}
		binary.BigEndian.PutUint64(buf, uint64(i))
		if _, err := conn.WriteToUDPAddrPort(buf, dst); err != nil {
			if errors.Is(err, syscall.ENOBUFS) || errors.Is(err, os.ErrDeadlineExceeded) {
				return i, fmt.Errorf("send %d: %w", i, err)
			}
			return i, err
		}
	}
	return count, nil
}

// tcpRetrans reads the namespace's TCP RetransSegs counter.
func tcpRetrans(t *testing.T, ctx context.Context, ns *lab.NS) int64 {
	t.Helper()
	out, err := ns.Run(ctx, "cat", "/proc/net/snmp")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Tcp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "RetransSegs" && i < len(f) {
				v, _ := strconv.ParseInt(f[i], 10, 64)
				return v
			}
		}
	}
	t.Fatal("no Tcp RetransSegs in /proc/net/snmp")
	return 0
}

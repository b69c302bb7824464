// Command demo is `make demo`: it builds a lab of three network namespaces
// (client, router, server), runs luafw in the router with the example
// plugins of this directory, sends real traffic through it, and prints what
// each plugin decided and what the kernel did. It tears everything down at
// the end, also on failure. It needs root and sends traffic only inside the
// lab.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/luafw/luafw/tests/lab"
)

func main() {
	bin := flag.String("luafw", "bin/luafw", "the luafw binary")
	dir := flag.String("config", "examples/demo/luafw.yaml", "the demo configuration")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	failed, err := run(ctx, *bin, *dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
	if len(failed) > 0 {
		fmt.Println("\ndemo: some results were not what the plugins should give (see ✗ above)")
		os.Exit(1)
	}
}

// report prints one line per check and remembers the failed ones.
type report struct{ failed []string }

func (r *report) check(what string, good bool, detail string) {
	mark := "✓"
	if !good {
		mark = "✗"
		r.failed = append(r.failed, what+": "+detail)
	}
	fmt.Printf("  %s %-58s %s\n", mark, what, detail)
}

// run builds the lab, runs luafw in it and checks what the plugins did; it
// returns the checks that failed (what and detail), or an error when the lab
// itself could not run.
func run(ctx context.Context, bin, cfg string) ([]string, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the demo needs root (it creates network namespaces); run it as root: make demo")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	fmt.Println("luafw demo: client ── router (luafw) ── server, in network namespaces")
	l, err := lab.Start(ctx, lab.Options{Prefix: "lfwdemo"})
	if err != nil {
		return nil, err
	}
	defer func() {
		l.Close()
		fmt.Println("lab removed")
	}()
	fmt.Printf("lab: client %s, router %s / %s, server %s\n", l.Client.Addr4, l.Router.Ifaces[0].Addr4.Addr(), l.Router.Ifaces[1].Addr4.Addr(), l.Server.Addr4)

	// Kernel rules that count what luafw's marks did (after luafw).
	if _, err := l.Router.Shell(ctx, `
iptables -t mangle -A POSTROUTING -p udp --dport 53 -m mark --mark 0x10/0xff
iptables -t mangle -A POSTROUTING -p tcp --dport 443 -m connmark --mark 0x1 -m conntrack --ctstate ESTABLISHED`); err != nil {
		return nil, err
	}
	for _, p := range []string{":22", ":23", ":25", ":443", ":8080"} {
		srv, err := l.Server.ServeTCP(p)
		if err != nil {
			return nil, err
		}
		defer srv.Close()
	}
	dns, err := l.Server.ServeUDP(":53")
	if err != nil {
		return nil, err
	}
	defer dns.Close()

	os.RemoveAll("/tmp/luafw-demo") // the capture file of an earlier run
	d, err := startLuafw(ctx, l.Router, bin, cfg)
	if err != nil {
		return nil, err
	}
	defer d.stop()
	fmt.Printf("luafw running in the router (pid %d), config %s\n\n", d.cmd.Process.Pid, cfg)

	r := &report{}
	srv := l.Server.Addr4
	fmt.Println("traffic from the client to the server, and what happened:")
	tcp := func(port uint16, timeout time.Duration) lab.ConnectResult {
		return l.Client.TCPConnect(ctx, netip.AddrPortFrom(srv, port).String(), timeout)
	}
	res := tcp(22, 2*time.Second)
	r.check("tcp/22 (ssh): passes", res.Outcome == lab.Connected, fmt.Sprintf("%v in %v", res.Outcome, res.Elapsed.Round(time.Millisecond)))
	trace, err := traceDuring(ctx, l.Router, bin, d, func() { res = tcp(23, time.Second) })
	if err != nil {
		return nil, err
	}
	r.check("tcp/23 (telnet): dropped by policy", res.Outcome == lab.TimedOut, fmt.Sprintf("%v", res.Outcome))
	r.check("luafw trace names the callback that dropped it", strings.Contains(trace, "=> drop by policy/"), "luafw trace -n 1 --verdict drop 'pkt.dport == 23 ...':")
	fmt.Print(indent(trace))
	res = tcp(25, 2*time.Second)
	r.check("tcp/25 (smtp): rejected by policy, refused at once", res.Outcome == lab.Refused,
		fmt.Sprintf("%v in %v", res.Outcome, res.Elapsed.Round(time.Millisecond)))

	sent, err := l.Client.UDPFlood(ctx, netip.AddrPortFrom(srv, 53).String(), 20, 48, 1000)
	if err != nil {
		return nil, err
	}
	dns.WaitCount(ctx, int64(sent))
	marked, _, _ := l.Router.IptablesCounter(ctx, "mangle", "POSTROUTING", "--dport 53")
	r.check("udp/53 (dns): marked 0x10 by mark-dns, seen by a kernel rule", marked == uint64(sent) && dns.Count() == int64(sent),
		fmt.Sprintf("%d sent, %d arrived, kernel saw the mark on %d", sent, dns.Count(), marked))

	ctmark, landed, err := https(ctx, l.Client, l.Router, srv)
	if err != nil {
		return nil, err
	}
	later, _, _ := l.Router.IptablesCounter(ctx, "mangle", "POSTROUTING", "--dport 443")
	r.check("tcp/443 (https): ct mark 0x1 set on the first packet", ctmark == 1 && later > 0,
		fmt.Sprintf("conntrack mark %#x %v after connecting; %d later packets carried it", ctmark, landed.Round(time.Millisecond), later))

	// Ten connections at once. A dropped SYN is sent again after a second
	// and dropped again (the bucket refills one token per 10 s), so the
	// 1.5 s wait gives a loaded machine room without letting a sixth in.
	var connected atomic.Int32
	var burst sync.WaitGroup
	for i := 0; i < 10; i++ {
		burst.Go(func() {
			if tcp(8080, 1500*time.Millisecond).Outcome == lab.Connected {
				connected.Add(1)
			}
		})
	}
	burst.Wait()
	r.check("tcp/8080 x10 at once: newconn-limit lets the burst (5) pass", connected.Load() == 5, fmt.Sprintf("%d connected, %d dropped", connected.Load(), 10-connected.Load()))

	fmt.Println("\nwhat each plugin decided (from luafw's metrics):")
	if err := printDecisions(ctx, l.Router, d); err != nil {
		return nil, err
	}
	queues, _ := l.Router.Run(ctx, "cat", "/proc/net/netfilter/nfnetlink_queue")
	fmt.Printf("\nkernel queues (queue, peer, waiting, mode, range, dropped, user-dropped, last id, 1):\n%s", indent(queues))

	if err := d.stop(); err != nil {
		return nil, err
	}
	comments, err := printCapture(ctx)
	if err != nil {
		return nil, err
	}
	r.check("capture file: the telnet drop, named by plugin and verdict", capturedBy(comments, "policy", "drop"), fmt.Sprintf("%d packets", len(comments)))
	left, _ := l.Router.Run(ctx, "nft", "list", "tables")
	r.check("after SIGTERM: no luafw rules left in the router", !strings.Contains(left, "luafw"), strings.TrimSpace(strings.ReplaceAll(left, "\n", "; ")))
	res = tcp(23, 2*time.Second)
	r.check("tcp/23 after luafw stopped: passes again", res.Outcome == lab.Connected, res.Outcome.String())
	return r.failed, nil
}

// https opens a connection to 443, waits (up to 2 s) for its conntrack entry
// in the router to carry a mark, and exchanges a few lines. It returns the
// mark and how long after connecting it was there: luafw applies connection
// updates after the first packet's verdict, once the kernel has confirmed the
// entry (docs/lua-api.md), so packets that pass before then do not carry it.
func https(ctx context.Context, client, router *lab.NS, srv netip.Addr) (uint32, time.Duration, error) {
	c, err := client.Dial(ctx, "tcp", netip.AddrPortFrom(srv, 443).String())
	if err != nil {
		return 0, 0, fmt.Errorf("https probe: %w", err)
	}
	defer c.Close()
	local := netip.MustParseAddrPort(c.LocalAddr().String())
	start := time.Now()
	var mark uint32
	for mark == 0 && time.Since(start) < 2*time.Second {
		entries, err := router.Conntrack(ctx)
		if err != nil {
			return 0, 0, err
		}
		for _, e := range entries {
			if e.Proto == 6 && e.DPort == 443 && e.SPort == local.Port() {
				mark = e.Mark
			}
		}
		if mark == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	landed := time.Since(start)
	for i := 0; i < 3; i++ {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("hello\n")); err != nil {
			return 0, 0, err
		}
		if _, err := c.Read(make([]byte, 6)); err != nil {
			return 0, 0, err
		}
	}
	return mark, landed, nil
}

// luafwProc is the daemon running in the router.
type luafwProc struct {
	cmd  *exec.Cmd
	logs *lockedBuf
	done chan error
	once sync.Once
	err  error
}

type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startLuafw(ctx context.Context, ns *lab.NS, bin, cfg string) (*luafwProc, error) {
	abs, err := filepath.Abs(bin)
	if err != nil {
		return nil, err
	}
	cfgAbs, _ := filepath.Abs(cfg)
	cmd, err := ns.Command(ctx, abs, "run", "--config", cfgAbs, "--metrics", "127.0.0.1:0", "--pidfile", "")
	if err != nil {
		return nil, err
	}
	p := &luafwProc{cmd: cmd, logs: &lockedBuf{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", abs, err)
	}
	go func() { p.done <- cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	// "luafw running" comes once the rules are installed and the queues
	// served; the metrics address is logged before it.
	for !strings.Contains(p.logs.String(), "luafw running") {
		select {
		case err := <-p.done:
			return nil, fmt.Errorf("luafw exited (%v):\n%s", err, p.logs.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("luafw did not start:\n%s", p.logs.String())
		}
	}
	return p, nil
}

// stop sends SIGTERM once and waits for a clean exit.
func (p *luafwProc) stop() error {
	p.once.Do(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-p.done:
			if err != nil {
				p.err = fmt.Errorf("luafw exited with %v:\n%s", err, p.logs.String())
			}
		case <-time.After(15 * time.Second):
			p.cmd.Process.Kill()
			p.err = errors.New("luafw did not stop within 15s")
		}
	})
	return p.err
}

// Labels come sorted by name, as client_golang writes them.
var verdictLine = regexp.MustCompile(`^luafw_callback_verdicts_total\{callback="([^"]+)",hook="([^"]+)",plugin="([^"]+)",verdict="([^"]+)"\} (\d+)`)

// printDecisions prints the per-plugin verdict counters.
func printDecisions(ctx context.Context, ns *lab.NS, p *luafwProc) error {
	addr := regexp.MustCompile(`msg="metrics listening" addr=(\S+)`).FindStringSubmatch(p.logs.String())
	if addr == nil {
		return errors.New("no metrics address in luafw's log")
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) { return ns.Dial(ctx, network, a) },
	}}
	resp, err := client.Get("http://" + addr[1] + "/metrics")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	counts := map[string]map[string]string{}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 1<<20))
	for sc.Scan() {
		m := verdictLine.FindStringSubmatch(sc.Text())
		if m == nil || m[5] == "0" {
			continue
		}
		key := fmt.Sprintf("%s (%s)", m[3], m[2])
		if counts[key] == nil {
			counts[key] = map[string]string{}
		}
		counts[key][m[4]] = m[5]
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var parts []string
		for _, v := range []string{"accept", "drop", "reject", "stop", "repeat"} {
			if n, ok := counts[k][v]; ok {
				parts = append(parts, v+" "+n)
			}
		}
		fmt.Printf("  %-32s %s\n", k, strings.Join(parts, ", "))
	}
	return nil
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}

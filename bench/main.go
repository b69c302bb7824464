// Command bench is `make bench`, luafw's end-to-end benchmark. It builds one
// lab of network namespaces (client -> router -> server, see tests/lab) and
// measures, in the same run, what reaches the server through the router's
// forward hook when the router runs:
//
//   - nothing but the kernel;
//   - a plain go-nfqueue consumer, one verdict per packet (cmd/nfqbaseline
//     -mode plain);
//   - luafw's batched reader accepting everything (nfqbaseline -mode
//     batched): the ceiling for any NFQUEUE program built on it;
//   - luafw with one trivial Lua plugin, and with a realistic configuration
//     (a blocklist of 10,000 CIDRs, classify, ratelimit);
//   - the same on two balanced queues.
//
// Each UDP row is a bounded flood of small datagrams from the client for a
// fixed time; the bench counts what was sent and received, the consumer's
// CPU (from /proc/PID/stat) and the kernel's queue counters. Then: a run at
// a fixed rate (80% of the batched reader's) to see whether luafw loses
// packets below saturation, TCP bulk throughput with iperf3 (kernel alone,
// luafw without and with offload), and the latency luafw adds to UDP round
// trips. Last, a sweep at fixed offered rates (sweep.go): 200 and 1,000
// pps evenly spaced, 15k and 60k pps in bursts, a flood, each with the
// batched reader, luafw trivial and luafw realistic, for consumer CPU per
// packet beside the floor at each rate (-sweep runs only that). It prints
// tables and writes the results as JSON.
//
// It needs root. All traffic stays inside the lab, which is removed at the
// end, also on error and on Ctrl-C.
//
//	go run ./bench -luafw bin/luafw -nfqbaseline bin/nfqbaseline
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/luafw/luafw/tests/lab"
)

// options are the command-line settings.
type options struct {
	luafw, baseline, iperf string
	repo                   string
	out                    string
	duration               time.Duration
	tcpTime                time.Duration
	maxPackets             int
	size                   int
	sources                int
	echoCount              int
	listSize               int
	ratePct                int
	timeout                time.Duration
	only                   string
	sinkMode               string
	profileDir             string
	sweepPoints            string
	sweepConsumers         string
	sweepDuration          time.Duration
	sweepSettle            time.Duration
}

// Ports and addresses inside the lab.
const (
	sinkPort  = 9000       // the flood's destination: no classify rule matches it
	sinkTable = "lfwbench" // the server's nftables table with the counting rule (-sink counter)
	floodPort = 40000      // the flood's source port (its flows are answered once: established)
	echoPort  = 7007
	iperfPort = 5201 // classify's "bulk" class (offloaded)
)

func main() {
	var o options
	flag.StringVar(&o.luafw, "luafw", "bin/luafw", "the luafw binary (make build)")
	flag.StringVar(&o.baseline, "nfqbaseline", "bin/nfqbaseline", "the nfqbaseline binary (go build ./cmd/nfqbaseline)")
	flag.StringVar(&o.iperf, "iperf3", "iperf3", "the iperf3 command (empty: skip the TCP rows)")
	flag.StringVar(&o.repo, "repo", ".", "the repository root (plugins/ and bench/ live there)")
	flag.StringVar(&o.out, "out", "bench-results.json", "write the JSON results here (empty: don't)")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "length of each UDP flood")
	flag.DurationVar(&o.tcpTime, "tcp-time", 4*time.Second, "length of each iperf3 transfer (whole seconds)")
	flag.IntVar(&o.maxPackets, "max-packets", 20_000_000, "bound on the datagrams of one flood")
	flag.IntVar(&o.size, "size", 64, "UDP payload bytes")
	flag.IntVar(&o.sources, "sources", 64, "client source addresses the flood rotates over (--queue-balance hashes addresses)")
	flag.IntVar(&o.echoCount, "rtt-count", 2000, "sequential UDP round trips per latency row")
	flag.IntVar(&o.listSize, "blocklist", 10_000, "CIDRs in the realistic configuration's blocklist")
	flag.IntVar(&o.ratePct, "rate-pct", 80, "the fixed-rate run's rate, in % of the batched reader's measured rate")
	flag.DurationVar(&o.timeout, "timeout", 8*time.Minute, "bound on the whole run")
	flag.StringVar(&o.sinkMode, "sink", "counter", "how the server receives the flood: counter (an nftables rule counts and drops it in the input hook) or socket (a UDP socket reads it)")
	flag.StringVar(&o.profileDir, "profile-dir", "", "write a CPU profile of each consumer here (luafw run --cpuprofile, nfqbaseline -cpuprofile)")
	flag.StringVar(&o.only, "only", "", "run only the groups named (comma-separated: kernel,plain,batched,trivial,rewrite,realistic,cluster,layered,noct,balanced,tcp,matched,sweep); for profiling")
	sweepOnly := flag.Bool("sweep", false, "run only the sweep at fixed offered rates (the same as -only sweep)")
	flag.StringVar(&o.sweepPoints, "sweep-points", "", "the sweep's points (comma-separated: rate200even,rate1000even,rate15k,rate60k,flood; empty: all)")
	flag.StringVar(&o.sweepConsumers, "sweep-consumers", "", "the sweep's consumers (comma-separated: batched,trivial,realistic; empty: all)")
	flag.DurationVar(&o.sweepDuration, "sweep-duration", 8*time.Second, "sending time of each sweep row")
	flag.DurationVar(&o.sweepSettle, "sweep-settle", 500*time.Millisecond, "idle time after a sweep row's consumer starts, before the measurement")
	flag.Parse()
	if *sweepOnly {
		o.only = "sweep"
	}

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, log); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

// bench holds the lab and what every row shares.
type bench struct {
	opt     options
	log     *slog.Logger
	l       *lab.Lab
	sink    *lab.UDPSink
	echo    *lab.UDPEcho
	dst     string
	sources []netip.Addr
	configs map[string]string // rendered configuration files by name
	res     *Results
}

func run(ctx context.Context, o options, log *slog.Logger) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces, nftables, NFQUEUE): sudo make bench")
	}
	if o.sinkMode != "counter" && o.sinkMode != "socket" {
		return fmt.Errorf("-sink %q: want counter or socket", o.sinkMode)
	}
	if o.sources < 1 || o.sources > 200 {
		return fmt.Errorf("-sources %d: want 1-200", o.sources)
	}
	var err error
	if o.repo, err = filepath.Abs(o.repo); err != nil {
		return err
	}
	for _, p := range []*string{&o.luafw, &o.baseline} {
		if *p, err = filepath.Abs(*p); err != nil {
			return err
		}
		if _, err := os.Stat(*p); err != nil {
			return fmt.Errorf("%w (make build; go build -o bin/nfqbaseline ./cmd/nfqbaseline)", err)
		}
	}
	if o.iperf != "" {
		if _, err := exec.LookPath(o.iperf); err != nil {
			return fmt.Errorf("iperf3: %w (scripts/deps.sh installs it; -iperf3 '' skips the TCP rows)", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	b := &bench{opt: o, log: log, configs: map[string]string{}}
	b.res = newResults(o)
	work, err := os.MkdirTemp("", "luafw-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if err := b.prepareConfigs(ctx, work); err != nil {
		return err
	}

	fmt.Printf("luafw bench: %d-byte UDP floods of %v, %d sources; %d cores; load average %s\n",
		o.size, o.duration, o.sources, runtime.NumCPU(), b.res.LoadBefore)
	l, err := lab.Start(ctx, lab.Options{Prefix: "lfwbench", NoIPv6: true})
	if err != nil {
		return err
	}
	b.l = l
	defer func() {
		if err := l.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "bench: removing the lab: %v\n", err)
		}
	}()
	if err := b.setupLab(ctx); err != nil {
		return err
	}

	runErr := b.runAll(ctx)
	b.res.finish()
	b.res.print(os.Stdout)
	if o.out != "" {
		if err := b.res.write(o.out); err != nil {
			return errors.Join(runErr, err)
		}
		fmt.Printf("\nresults written to %s\n", o.out)
	}
	return runErr
}

// prepareConfigs renders the configurations and checks each with
// `luafw run --dry-run`, which loads every plugin.
func (b *bench) prepareConfigs(ctx context.Context, work string) error {
	list := filepath.Join(work, "blocklist.txt")
	if err := writeBlocklist(list, b.opt.listSize); err != nil {
		return err
	}
	benchDir := filepath.Join(b.opt.repo, "bench")
	base := configParams{Repo: b.opt.repo, BenchDir: benchDir, ListFile: list, Balance: 1, Conntrack: true,
		OffloadMask: 0x100, IperfPort: iperfPort}
	for _, v := range []struct {
		name, tmpl string
		edit       func(*configParams)
	}{
		{"trivial-q1", "trivial", nil},
		{"trivial-q2", "trivial", func(p *configParams) { p.Balance = 2 }},
		{"trivial-noct", "trivial", func(p *configParams) { p.Conntrack = false }},
		{"rewrite-q1", "rewrite", nil},
		{"realistic-q1", "realistic", nil},
		{"realistic-q2", "realistic", func(p *configParams) { p.Balance = 2 }},
		{"realistic-nooffload", "realistic", func(p *configParams) { p.OffloadMask = 0 }},
		{"realistic-cluster", "realistic", func(p *configParams) { p.Redis = benchRedis }},
		{"layered-q1", "layered", nil},
		{"matched-q1", "matched", nil},
	} {
		p := base
		if v.edit != nil {
			v.edit(&p)
		}
		path, err := renderConfig(benchDir, v.tmpl, work, v.name+".yaml", p)
		if err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		out, err := exec.CommandContext(cctx, b.opt.luafw, "run", "--dry-run", "--config", path).CombinedOutput()
		cancel()
		if err != nil {
			return fmt.Errorf("config %s does not load: %w\n%s", v.name, err, out)
		}
		b.configs[v.name] = path
		b.res.Configs[v.name] = segmentsOf(string(out))
	}
	return nil
}

// segmentsOf extracts the segment lines of `luafw run --dry-run`.
func segmentsOf(dry string) []string {
	var segs []string
	in := false
	for _, line := range strings.Split(dry, "\n") {
		switch {
		case strings.HasPrefix(line, "# segments"):
			in = true
		case in && strings.TrimSpace(line) == "":
			return segs
		case in && !strings.HasPrefix(line, "#"):
			segs = append(segs, strings.TrimSpace(line))
		}
	}
	return segs
}

// setupLab adds the client's extra source addresses and starts the sink
// and the echo server.
func (b *bench) setupLab(ctx context.Context) error {
	var script strings.Builder
	b.sources = []netip.Addr{b.l.Client.Addr4}
	a := b.l.Client.Addr4
	for i := 1; i < b.opt.sources; i++ {
		a = a.Next()
		fmt.Fprintf(&script, "ip addr add %s/24 dev c0\n", a)
		b.sources = append(b.sources, a)
	}
	if script.Len() > 0 {
		if _, err := b.l.Client.Shell(ctx, script.String()); err != nil {
			return err
		}
	}
	var err error
	if b.opt.sinkMode == "socket" {
		if b.sink, err = b.l.Server.ServeUDP(fmt.Sprintf(":%d", sinkPort)); err != nil {
			return err
		}
	} else {
		// Counting in the input hook costs the server far less CPU than a
		// socket; the CPU is the lab's bottleneck on a small machine.
		if _, err := b.l.Server.Shell(ctx, fmt.Sprintf(`nft add table ip %[1]s
nft add chain ip %[1]s input '{ type filter hook input priority 0; }'
nft add rule ip %[1]s input udp dport %[2]d counter drop`, sinkTable, sinkPort)); err != nil {
			return err
		}
	}
	b.dst = netip.AddrPortFrom(b.l.Server.Addr4, sinkPort).String()
	if b.echo, err = b.l.Server.ServeUDPEcho(fmt.Sprintf(":%d", echoPort)); err != nil {
		return err
	}
	return nil
}

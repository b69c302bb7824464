// Command nfqbaseline measures how many packets per second an NFQUEUE
// consumer that accepts everything can answer, in the current network
// namespace (run it with `ip netns exec`). Two consumers:
//
//   - plain: go-nfqueue v2.1.0 with RegisterWithErrorFunc and one SetVerdict
//     per packet, what most Go NFQUEUE programs do;
//   - batched: luafw's queue.Socket (recvmmsg bursts, one sendmsg of verdicts
//     per burst), the ceiling luafw builds on.
//
// It stops after -duration or on SIGTERM/SIGINT and prints one JSON line of
// counts on standard output.
//
//	nfqbaseline -mode batched -queues 0-1 -duration 10s
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/mdlayher/netlink"

	"github.com/luafw/luafw/nfq/queue"
)

// result is the JSON line printed at exit.
type result struct {
	Mode     string   `json:"mode"`
	Queues   []uint16 `json:"queues"`
	Sockets  int      `json:"sockets"`
	Packets  uint64   `json:"packets"`
	Seconds  float64  `json:"seconds"`
	PPS      float64  `json:"pps"`
	Errors   uint64   `json:"errors"`                   // receive/verdict errors
	Bursts   uint64   `json:"bursts,omitempty"`         // batched only
	MaxBurst uint64   `json:"max_burst,omitempty"`      // batched only
	ENOBUFS  uint64   `json:"enobufs,omitempty"`        // batched only
	FirstPkt float64  `json:"first_packet_s,omitempty"` // seconds from start to the first packet
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "nfqbaseline:", err)
		os.Exit(1)
	}
}

func run() error {
	mode := flag.String("mode", "batched", "consumer: plain (go-nfqueue, one verdict per packet) or batched (queue.Socket)")
	queueNum := flag.Int("queue", 0, "queue number (ignored with -queues)")
	queues := flag.String("queues", "", "queue range N-M (plain: one socket per queue; batched: one socket for all, see -per-queue)")
	perQueue := flag.Bool("per-queue", false, "batched: one socket and goroutine per queue instead of one for all")
	duration := flag.Duration("duration", 10*time.Second, "how long to run (SIGTERM/SIGINT stop earlier)")
	burst := flag.Int("burst", queue.DefaultBurst, "batched: datagrams per receive")
	gso := flag.Bool("gso", false, "request NFQA_CFG_F_GSO")
	verbose := flag.Bool("v", false, "log to standard error")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	flag.Parse()

	qs, err := parseQueues(*queueNum, *queues)
	if err != nil {
		return err
	}
	logger := slog.New(slog.DiscardHandler)
	if *verbose {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, *duration)
	defer cancelT()

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}

	res := result{Mode: *mode, Queues: qs}
	c := &counter{start: time.Now()}
	switch *mode {
	case "plain":
		err = runPlain(ctx, qs, *gso, logger, c, &res)
	case "batched":
		err = runBatched(ctx, qs, *perQueue, *burst, *gso, logger, c, &res)
	default:
		return fmt.Errorf("-mode %q: want plain or batched", *mode)
	}
	res.Seconds = time.Since(c.start).Seconds()
	res.Packets = c.packets.Load()
	if res.Seconds > 0 {
		res.PPS = float64(res.Packets) / res.Seconds
	}
	if f := c.first.Load(); f > 0 {
		res.FirstPkt = time.Duration(f).Seconds()
	}
	if jerr := json.NewEncoder(os.Stdout).Encode(res); jerr != nil {
		return errors.Join(err, jerr)
	}
	return err
}

// counter counts accepted packets across goroutines.
type counter struct {
	start   time.Time
	packets atomic.Uint64
	errors  atomic.Uint64
	first   atomic.Int64 // nanoseconds since start of the first packet
}

func (c *counter) add(n int) {
	if c.packets.Add(uint64(n)) == uint64(n) {
		c.first.CompareAndSwap(0, int64(time.Since(c.start)))
	}
}

func parseQueues(single int, rng string) ([]uint16, error) {
	if rng == "" {
		if single < 0 || single > 65535 {
			return nil, fmt.Errorf("-queue %d out of range", single)
		}
		return []uint16{uint16(single)}, nil
	}
	lo, hi, ok := strings.Cut(rng, "-")
	if !ok {
		hi = lo
	}
	a, err1 := strconv.ParseUint(lo, 10, 16)
	b, err2 := strconv.ParseUint(hi, 10, 16)
	if err1 != nil || err2 != nil || b < a || b-a >= 1024 {
		return nil, fmt.Errorf("-queues %q: want N-M with 0 <= N <= M <= 65535", rng)
	}
	var qs []uint16
	for q := a; q <= b; q++ {
		qs = append(qs, uint16(q))
	}
	return qs, nil
}

// runPlain is the usual go-nfqueue program: one socket per queue, a hook
// function that answers each packet with its own SetVerdict.
func runPlain(ctx context.Context, qs []uint16, gso bool, log *slog.Logger, c *counter, res *result) error {
	var flags uint32
	if gso {
		flags |= nfqueue.NfQaCfgFlagGSO
	}
	for _, q := range qs {
		nf, err := nfqueue.Open(&nfqueue.Config{
			NfQueue:      q,
			MaxPacketLen: 0xffff,
			MaxQueueLen:  queue.DefaultMaxLen,
			Copymode:     nfqueue.NfQnlCopyPacket,
			Flags:        flags,
		})
		if err != nil {
			return fmt.Errorf("go-nfqueue open queue %d: %w", q, err)
		}
		defer nf.Close()
		if err := nf.SetOption(netlink.NoENOBUFS, true); err != nil {
			return fmt.Errorf("go-nfqueue queue %d: NoENOBUFS: %w", q, err)
		}
		hook := func(a nfqueue.Attribute) int {
			if a.PacketID == nil {
				return 0
			}
			if err := nf.SetVerdict(*a.PacketID, nfqueue.NfAccept); err != nil {
				c.errors.Add(1)
				log.Warn("SetVerdict", "queue", q, "err", err)
			}
			c.add(1)
			return 0
		}
		errFn := func(err error) int {
			if ctx.Err() != nil {
				return 1
			}
			c.errors.Add(1)
			log.Warn("receive", "queue", q, "err", err)
			return 0
		}
		if err := nf.RegisterWithErrorFunc(ctx, hook, errFn); err != nil {
			return fmt.Errorf("go-nfqueue register queue %d: %w", q, err)
		}
	}
	res.Sockets = len(qs)
	<-ctx.Done()
	res.Errors = c.errors.Load()
	return nil
}

// runBatched serves the queues with queue.Socket and an accept-all handler.
func runBatched(ctx context.Context, qs []uint16, perQueue bool, burst int, gso bool, log *slog.Logger, c *counter, res *result) error {
	groups := [][]uint16{qs}
	if perQueue {
		groups = nil
		for _, q := range qs {
			groups = append(groups, []uint16{q})
		}
	}
	var socks []*queue.Socket
	defer func() {
		for _, s := range socks {
			s.Close()
		}
	}()
	for _, g := range groups {
		s, err := queue.Open(queue.Config{Queues: g, Burst: burst, GSO: gso, Logger: log})
		if err != nil {
			return err
		}
		socks = append(socks, s)
	}
	accept := func(msgs []queue.Msg, out []queue.Verdict) {
		for i := range out {
			out[i].Verdict = queue.VerdictAccept
		}
		c.add(len(msgs))
	}
	var wg sync.WaitGroup
	errs := make([]error, len(socks))
	for i, s := range socks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Serve(ctx, accept)
		}()
	}
	wg.Wait()
	res.Sockets = len(socks)
	for _, s := range socks {
		st := s.Stats()
		res.Bursts += st.Bursts
		res.MaxBurst = max(res.MaxBurst, st.MaxBurst)
		res.ENOBUFS += st.ENOBUFS
		res.Errors += st.SendErrors + st.RecvErrors + st.KernelErrors + st.ParseErrors
	}
	return errors.Join(errs...)
}

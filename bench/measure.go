package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"time"

	"github.com/luafw/luafw/tests/lab"
)

// Row is one measurement of the benchmark.
type Row struct {
	ID     string `json:"id"`     // stable key, e.g. "udp/luafw-trivial/q1"
	Kind   string `json:"kind"`   // udp-flood, udp-rate, tcp-bulk, udp-rtt
	Setup  string `json:"setup"`  // what ran in the router
	Queues int    `json:"queues"` // queues the consumer reads per ct state (0: no queue)

	// UDP rows.
	Sent       int     `json:"sent,omitempty"`
	Received   int64   `json:"received,omitempty"`
	Lost       int64   `json:"lost,omitempty"`
	LossPct    float64 `json:"loss_pct,omitempty"`
	Seconds    float64 `json:"seconds,omitempty"` // sending time
	SentPPS    float64 `json:"sent_pps,omitempty"`
	RecvPPS    float64 `json:"recv_pps,omitempty"`
	TargetPPS  int     `json:"target_pps,omitempty"`   // udp-rate: the pacing
	VsPlain    float64 `json:"vs_plain,omitempty"`     // RecvPPS / the plain consumer's
	VsBatched  float64 `json:"vs_batched,omitempty"`   // RecvPPS / the batched reader's (same queue count)
	VsOneQueue float64 `json:"vs_one_queue,omitempty"` // two-queue rows: RecvPPS / the same setup's on one queue
	// PerCore is RecvPPS per core the consumer used (RecvPPS / consumer
	// CPU): what it could carry with a core to itself. Floods here are
	// often limited by the sender, not the consumer.
	PerCore        float64 `json:"pps_per_consumer_core,omitempty"`
	PerCoreVsBatch float64 `json:"per_core_vs_batched,omitempty"`
	// CPUPerPacket is the consumer's CPU time over the measurement divided
	// by the packets the sink received, in µs: what the goals compare.
	CPUPerPacket float64 `json:"consumer_cpu_us_per_packet,omitempty"`
	// CPUVsBatched is CPUPerPacket / the batched reader's on as many
	// queues; CPUVsOneQueue, on two-queue rows, CPUPerPacket / the same
	// setup's on one queue (flat scaling: 1).
	CPUVsBatched   float64  `json:"cpu_per_packet_vs_batched,omitempty"`
	CPUVsOneQueue  float64  `json:"cpu_per_packet_vs_one_queue,omitempty"`
	Queued         uint64   `json:"queued,omitempty"`         // packets the kernel queued (all queues)
	QueueFull      uint64   `json:"queue_full,omitempty"`     // dropped by the kernel: queue full
	SocketDropped  uint64   `json:"socket_dropped,omitempty"` // dropped by the kernel: reader's socket buffer full
	PerQueue       []uint64 `json:"per_queue,omitempty"`      // queued per queue that saw packets
	PacketsPerPass float64  `json:"queue_passes,omitempty"`

	// TCP rows.
	Gbps       float64 `json:"gbps,omitempty"`
	VsKernel   float64 `json:"vs_kernel,omitempty"`           // Gbps or RecvPPS / the kernel alone's
	VsKernelCT float64 `json:"vs_kernel_conntrack,omitempty"` // the same / the kernel's with conntrack on
	Retrans    int64   `json:"retransmits,omitempty"`
	TCPQueued  uint64  `json:"tcp_queued,omitempty"`

	// Round-trip rows.
	RTTCount int     `json:"rtt_count,omitempty"`
	RTTLost  int     `json:"rtt_lost,omitempty"`
	P50us    float64 `json:"p50_us,omitempty"`
	P99us    float64 `json:"p99_us,omitempty"`
	AddedP50 float64 `json:"added_p50_us,omitempty"` // over the kernel alone
	AddedP99 float64 `json:"added_p99_us,omitempty"`

	// CPU over the measurement, in % of one core.
	ConsumerCPU float64 `json:"consumer_cpu_pct,omitempty"`
	BenchCPU    float64 `json:"bench_cpu_pct,omitempty"`   // this process: sender, sink, their softirq work
	MachineCPU  float64 `json:"machine_cpu_pct,omitempty"` // all cores, all processes (the machine is shared)

	// Sweep rows (kind udp-sweep): the offered traffic and how the sender
	// kept to it.
	Point     string  `json:"sweep_point,omitempty"`    // e.g. rate200even
	Consumer  string  `json:"consumer,omitempty"`       // batched, trivial, realistic
	Offered   string  `json:"offered,omitempty"`        // the point, in words
	Sources   int     `json:"sources,omitempty"`        // client addresses the sender rotates over
	Batch     int     `json:"batch,omitempty"`          // datagrams per sendmmsg (1: evenly spaced)
	MeanBurst float64 `json:"mean_burst,omitempty"`     // datagrams per sendmmsg call achieved
	MaxLateUs float64 `json:"max_late_us,omitempty"`    // paced: largest delay of a send behind its deadline
	LatePct   float64 `json:"late_sends_pct,omitempty"` // paced: sends more than half a period behind their deadline, % of sends
	Load1     string  `json:"load_avg_1min,omitempty"`  // the machine's 1-minute load average before the row

	Note string `json:"note,omitempty"`
}

// snapshot is the state before and after a measurement.
type snapshot struct {
	at       time.Time
	sink     int64
	consumer time.Duration
	self     time.Duration
	machine  machineCPU
	queues   map[uint16]kernelQueue
}

func (b *bench) snap(ctx context.Context, c *consumer) (snapshot, error) {
	s := snapshot{at: time.Now()}
	var err error
	if s.sink, err = b.received(ctx); err != nil {
		return s, err
	}
	if c != nil {
		if s.consumer, err = c.cpu(); err != nil {
			return s, err
		}
	}
	if s.self, err = procCPU(os.Getpid()); err != nil {
		return s, err
	}
	if s.machine, err = readMachineCPU(); err != nil {
		return s, err
	}
	if s.queues, err = readQueues(ctx, b.l.Router); err != nil {
		return s, err
	}
	return s, nil
}

// cpuFill sets the CPU columns of r from two snapshots.
func cpuFill(r *Row, a, z snapshot, hasConsumer bool) {
	wall := z.at.Sub(a.at).Seconds()
	if wall <= 0 {
		return
	}
	if hasConsumer {
		r.ConsumerCPU = pct((z.consumer - a.consumer).Seconds() / wall)
	}
	r.BenchCPU = pct((z.self - a.self).Seconds() / wall)
	if dt := z.machine.total - a.machine.total; dt > 0 {
		// % of one core, summed over cores, like the others.
		r.MachineCPU = pct(float64(z.machine.busy-a.machine.busy) / float64(userHZ) / wall)
	}
}

func pct(f float64) float64 { return round(100*f, 1) }

func round(f float64, digits int) float64 {
	v, _ := strconv.ParseFloat(strconv.FormatFloat(f, 'f', digits, 64), 64)
	return v
}

// queueFill sets the queue columns of r from two snapshots.
func queueFill(r *Row, a, z snapshot) {
	var qs []int
	for q := range z.queues {
		qs = append(qs, int(q))
	}
	sort.Ints(qs)
	for _, qi := range qs {
		q := uint16(qi)
		d := z.queues[q].Seq - a.queues[q].Seq
		r.Queued += d
		r.QueueFull += z.queues[q].Dropped - a.queues[q].Dropped
		r.SocketDropped += z.queues[q].UDrop - a.queues[q].UDrop
		if d > 0 {
			r.PerQueue = append(r.PerQueue, d)
		}
	}
}

// flood sends one bounded UDP flood (rate 0: as fast as possible) from the
// client to the server's sink, waits for the stragglers and fills a row.
// Its flows are answered once before (see prime), so conntrack has them
// established, unless unanswered is set: then every packet is "new" to
// conntrack, as in a one-way flood of fresh flows.
func (b *bench) flood(ctx context.Context, r *Row, c *consumer, rate int, unanswered bool) error {
	return b.floodWith(ctx, r, c, lab.Blast{Sources: b.sources, Duration: b.opt.duration, Rate: rate}, unanswered)
}

// floodWith is flood with the sender's settings given: Sources, Duration,
// Rate, Batch and Burst are taken from bl, the rest is the bench's.
func (b *bench) floodWith(ctx context.Context, r *Row, c *consumer, bl lab.Blast, unanswered bool) error {
	rate := bl.Rate
	port := uint16(floodPort)
	if unanswered {
		port = 0 // fresh ephemeral ports: flows conntrack has never seen
	} else if err := b.prime(ctx); err != nil {
		return err
	}
	a, err := b.snap(ctx, c)
	if err != nil {
		return err
	}
	bl.Dst, bl.SrcPort, bl.Size, bl.Max = b.dst, port, b.opt.size, b.opt.maxPackets
	res, err := b.l.Client.UDPBlast(ctx, bl)
	if err != nil {
		return err
	}
	if res.Calls > 0 {
		r.MeanBurst = round(float64(res.Sent)/float64(res.Calls), 1)
	}
	if rate > 0 {
		r.MaxLateUs = round(float64(res.MaxLate.Nanoseconds())/1e3, 0)
		if res.Calls > 0 {
			r.LatePct = round(100*float64(res.LateCalls)/float64(res.Calls), 2)
		}
	}
	if err := b.settle(ctx); err != nil {
		return err
	}
	z, err := b.snap(ctx, c)
	if err != nil {
		return err
	}
	r.Kind = "udp-flood"
	if rate > 0 {
		r.Kind, r.TargetPPS = "udp-rate", rate
	}
	r.Sent = res.Sent
	r.Received = z.sink - a.sink
	r.Lost = int64(res.Sent) - r.Received
	if res.Sent > 0 {
		r.LossPct = round(100*float64(r.Lost)/float64(res.Sent), 2)
	}
	r.Seconds = round(res.Elapsed.Seconds(), 2)
	r.SentPPS = round(res.PPS(), 0)
	r.RecvPPS = round(float64(r.Received)/res.Elapsed.Seconds(), 0)
	cpuFill(r, a, z, c != nil)
	queueFill(r, a, z)
	if r.ConsumerCPU > 0 {
		r.PerCore = round(r.RecvPPS/(r.ConsumerCPU/100), 0)
	}
	if c != nil && r.Received > 0 {
		r.CPUPerPacket = round(float64((z.consumer-a.consumer).Microseconds())/float64(r.Received), 2)
	}
	if r.Received > 0 && r.Queued > r.SocketDropped {
		r.PacketsPerPass = round(float64(r.Queued-r.SocketDropped)/float64(r.Received), 2)
	}
	if res.SoftErrors > 0 {
		r.Note = fmt.Sprintf("%d send calls failed softly (ENOBUFS/ICMP errors)", res.SoftErrors)
	}
	return nil
}

// prime makes the flood's flows established for the router's conntrack:
// one datagram from each flow's source to the server and, once those have
// arrived (their conntrack entries are confirmed only when the consumer has
// accepted them), one answer from the server's port back. With -sink
// socket the sink holds the port: the flows stay unanswered.
func (b *bench) prime(ctx context.Context) error {
	if b.sink != nil {
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	before, err := b.received(pctx)
	if err != nil {
		return err
	}
	if _, err := b.l.Client.UDPBlast(pctx, lab.Blast{Dst: b.dst, Sources: b.sources, SrcPort: floodPort,
		Size: 8, Duration: time.Second, Max: len(b.sources), Batch: 1}); err != nil {
		return fmt.Errorf("priming the flows: %w", err)
	}
	for {
		n, err := b.received(pctx)
		if err != nil {
			return fmt.Errorf("priming the flows: %w", err)
		}
		if n >= before+int64(len(b.sources)) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	pc, err := b.l.Server.ListenPacket("udp4", fmt.Sprintf(":%d", sinkPort))
	if err != nil {
		return fmt.Errorf("priming the flows: %w", err)
	}
	defer pc.Close()
	for _, src := range b.sources {
		if _, err := pc.WriteTo([]byte("primed"), net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, floodPort))); err != nil {
			return fmt.Errorf("priming the flow from %s: %w", src, err)
		}
	}
	time.Sleep(50 * time.Millisecond) // let the answers through the queues
	return nil
}

// settle waits until the server has received nothing new for 200 ms (at
// most 3 s): queued packets drain after the sender stops.
func (b *bench) settle(ctx context.Context) error {
	last, err := b.received(ctx)
	if err != nil {
		return err
	}
	still := time.Now()
	end := time.Now().Add(3 * time.Second)
	for time.Now().Before(end) && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
		n, err := b.received(ctx)
		if err != nil {
			return err
		}
		if n != last {
			last, still = n, time.Now()
		} else if time.Since(still) >= 200*time.Millisecond {
			return nil
		}
	}
	return ctx.Err()
}

// received is the number of flood datagrams the server has received:
// its sink socket's count, or (-sink counter) the packet counter of an
// nftables rule in the server's input hook that counts and drops them.
func (b *bench) received(ctx context.Context) (int64, error) {
	if b.sink != nil {
		return b.sink.Count(), nil
	}
	p, _, err := b.l.Server.NftCounter(ctx, "ip", sinkTable, "input", fmt.Sprintf("udp dport %d", sinkPort))
	return int64(p), err
}

// roundTrips measures sequential UDP echo round trips through the router.
func (b *bench) roundTrips(ctx context.Context, r *Row, c *consumer) error {
	a, err := b.snap(ctx, c)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	addr := netip.AddrPortFrom(b.l.Server.Addr4, b.echo.Port()).String()
	rt, err := b.l.Client.UDPRoundTrips(rctx, addr, b.opt.echoCount, 64, time.Second)
	if err != nil {
		return err
	}
	z, err := b.snap(ctx, c)
	if err != nil {
		return err
	}
	r.Kind = "udp-rtt"
	r.RTTCount, r.RTTLost = rt.Sent, rt.Lost
	r.P50us = round(float64(rt.Percentile(50))/1e3, 1)
	r.P99us = round(float64(rt.Percentile(99))/1e3, 1)
	cpuFill(r, a, z, c != nil)
	queueFill(r, a, z)
	r.PerQueue = nil
	return nil
}

// iperfResult is the part of `iperf3 -J` output the bench reads.
type iperfResult struct {
	End struct {
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
		SumSent struct {
			Retransmits int64 `json:"retransmits"`
		} `json:"sum_sent"`
	} `json:"end"`
	Error string `json:"error"`
}

// tcpBulk runs one iperf3 transfer from the client to the server.
func (b *bench) tcpBulk(ctx context.Context, r *Row, c *consumer) error {
	tctx, cancel := context.WithTimeout(ctx, b.opt.tcpTime+30*time.Second)
	defer cancel()
	port := strconv.Itoa(iperfPort)
	srv, err := b.l.Server.Command(tctx, b.opt.iperf, "-s", "-1", "-p", port)
	if err != nil {
		return err
	}
	var srvOut syncBuffer
	srv.Stdout, srv.Stderr = &srvOut, &srvOut
	if err := srv.Start(); err != nil {
		return fmt.Errorf("iperf3 server: %w", err)
	}
	defer func() {
		_ = srv.Process.Kill()
		_ = srv.Wait()
	}()
	// Wait until it listens (a probe connection would count as its client).
	for i := 0; ; i++ {
		out, err := b.l.Server.Run(tctx, "ss", "-Hltn", "sport = :"+port)
		if err == nil && len(out) > 0 {
			break
		}
		if i > 200 {
			return fmt.Errorf("iperf3 server not listening after 10 s: %v %s", err, srvOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	a, err := b.snap(ctx, c)
	if err != nil {
		return err
	}
	secs := strconv.Itoa(max(1, int(b.opt.tcpTime/time.Second)))
	out, err := b.l.Client.Run(tctx, b.opt.iperf, "-c", b.l.Server.Addr4.String(), "-p", port, "-t", secs, "-O", "1", "-J")
	var res iperfResult
	if jerr := json.Unmarshal([]byte(out), &res); jerr != nil || err != nil || res.Error != "" {
		return fmt.Errorf("iperf3 client: %v %s (output %q)", err, res.Error, tail(out, 300))
	}
	z, err := b.snap(ctx, c)
	if err != nil {
		return err
	}
	r.Kind = "tcp-bulk"
	r.Gbps = round(res.End.SumReceived.BitsPerSecond/1e9, 2)
	r.Retrans = res.End.SumSent.Retransmits
	cpuFill(r, a, z, c != nil)
	queueFill(r, a, z)
	r.TCPQueued, r.Queued, r.PerQueue = r.Queued, 0, nil
	return nil
}

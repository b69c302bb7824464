package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/luafw/luafw/host"
)

// KernelQueue is one line of /proc/net/netfilter/nfnetlink_queue.
type KernelQueue struct {
	Queue       uint16
	PortID      uint32
	Waiting     uint64 // packets queued, waiting for a verdict
	CopyMode    int
	CopyRange   uint32
	Dropped     uint64 // dropped because the queue was full
	UserDropped uint64 // dropped because netlink could not deliver them (socket buffer full)
	LastID      uint64
}

// ReadKernelQueues parses the kernel's NFQUEUE statistics (of the current
// network namespace).
func ReadKernelQueues() ([]KernelQueue, error) {
	f, err := os.Open("/proc/net/netfilter/nfnetlink_queue")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseKernelQueues(f)
}

func parseKernelQueues(r io.Reader) ([]KernelQueue, error) {
	var out []KernelQueue
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 {
			continue
		}
		n := make([]uint64, 8)
		for i := range n {
			v, err := strconv.ParseUint(f[i], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("nfnetlink_queue: bad field %q in %q", f[i], sc.Text())
			}
			n[i] = v
		}
		out = append(out, KernelQueue{Queue: uint16(n[0]), PortID: uint32(n[1]), Waiting: n[2], CopyMode: int(n[3]),
			CopyRange: uint32(n[4]), Dropped: n[5], UserDropped: n[6], LastID: n[7]})
	}
	return out, sc.Err()
}

// ServeMetrics serves Prometheus metrics on addr until ctx is done.
func (d *Daemon) ServeMetrics(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		d.WriteMetrics(w)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	d.log.Info("metrics listening", "addr", ln.Addr().String())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// promWriter writes the Prometheus text format, one HELP/TYPE per family.
type promWriter struct {
	w    io.Writer
	seen map[string]bool
}

func (p *promWriter) family(name, typ, help string) {
	if p.seen[name] {
		return
	}
	p.seen[name] = true
	fmt.Fprintf(p.w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

func (p *promWriter) sample(name string, value float64, labels ...string) {
	fmt.Fprint(p.w, name)
	if len(labels) > 0 {
		fmt.Fprint(p.w, "{")
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				fmt.Fprint(p.w, ",")
			}
			fmt.Fprintf(p.w, "%s=%q", labels[i], labels[i+1])
		}
		fmt.Fprint(p.w, "}")
	}
	fmt.Fprintf(p.w, " %s\n", strconv.FormatFloat(value, 'g', -1, 64))
}

// WriteMetrics writes every metric in the Prometheus text format.
func (d *Daemon) WriteMetrics(w io.Writer) {
	p := &promWriter{w: w, seen: map[string]bool{}}
	p.family("luafw_generation", "gauge", "Id of the running set of plugins.")
	p.sample("luafw_generation", float64(d.eng.Generation()))
	p.family("luafw_reloads_total", "counter", "Reloads, by result.")
	p.sample("luafw_reloads_total", float64(d.reloads.Load()), "result", "ok")
	p.sample("luafw_reloads_total", float64(d.failed.Load()), "result", "failed")
	p.family("luafw_tables_restored_total", "counter", "Times luafw's tables were changed or removed by someone else and put back.")
	p.sample("luafw_tables_restored_total", float64(d.restored.Load()))

	d.mu.Lock()
	keys := make([]string, 0, len(d.segStats))
	for k := range d.segStats {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	p.family("luafw_packets_total", "counter", "Packets decided, by segment (hook@chain priority) and verdict.")
	for _, k := range keys {
		s := d.segStats[k]
		for v := range s.verdicts {
			p.sample("luafw_packets_total", float64(s.verdicts[v].Load()), "segment", k, "verdict", host.Verdict(v).String())
		}
	}
	p.family("luafw_ct_updates_total", "counter", "Conntrack updates handed to the updater, or dropped because its queue was full.")
	for _, k := range keys {
		s := d.segStats[k]
		p.sample("luafw_ct_updates_total", float64(s.ctSubmit.Load()), "segment", k, "result", "submitted")
		p.sample("luafw_ct_updates_total", float64(s.ctDrop.Load()), "segment", k, "result", "dropped")
	}
	p.family("luafw_queue_received_total", "counter", "Packets received per socket (first queue number).")
	p.family("luafw_queue_errors_total", "counter", "Socket errors by kind.")
	for _, k := range sortedKeys(d.runners) {
		for _, s := range d.runners[k].socks {
			st, info := s.Stats(), s.Info()
			q := strconv.Itoa(int(info.Queues[0]))
			p.sample("luafw_queue_received_total", float64(st.Received), "queue", q)
			p.sample("luafw_queue_errors_total", float64(st.ENOBUFS), "queue", q, "kind", "enobufs")
			p.sample("luafw_queue_errors_total", float64(st.SendErrors), "queue", q, "kind", "send")
			p.sample("luafw_queue_errors_total", float64(st.RecvErrors), "queue", q, "kind", "recv")
			p.sample("luafw_queue_errors_total", float64(st.ParseErrors), "queue", q, "kind", "parse")
		}
	}
	d.mu.Unlock()

	if kq, err := ReadKernelQueues(); err == nil {
		p.family("luafw_kernel_queue_waiting", "gauge", "Packets waiting in the kernel queue for a verdict.")
		p.family("luafw_kernel_queue_dropped_total", "counter", "Packets the kernel dropped: queue full (full) or undeliverable to the socket (user).")
		for _, q := range kq {
			qs := strconv.Itoa(int(q.Queue))
			p.sample("luafw_kernel_queue_waiting", float64(q.Waiting), "queue", qs)
			p.sample("luafw_kernel_queue_dropped_total", float64(q.Dropped), "queue", qs, "reason", "full")
			p.sample("luafw_kernel_queue_dropped_total", float64(q.UserDropped), "queue", qs, "reason", "user")
		}
	}

	for _, ps := range d.eng.Plugins() {
		p.family("luafw_plugin_quarantined", "gauge", "1 while a plugin is quarantined after repeated failures.")
		q := 0.0
		if ps.Quarantined {
			q = 1
		}
		p.sample("luafw_plugin_quarantined", q, "plugin", ps.Name)
	}
	for _, cs := range d.eng.Stats() {
		lbl := []string{"plugin", cs.Plugin, "callback", cs.Name, "hook", cs.Hook.String()}
		p.family("luafw_callback_verdicts_total", "counter", "Callback calls by verdict (failed calls count under their on_error verdict).")
		for _, v := range []string{"accept", "drop", "stop", "reject", "repeat"} {
			p.sample("luafw_callback_verdicts_total", float64(cs.Verdicts[v]), append(lbl, "verdict", v)...)
		}
		p.family("luafw_callback_failures_total", "counter", "Callback calls that failed, by reason.")
		p.sample("luafw_callback_failures_total", float64(cs.Errors), append(lbl, "reason", "error")...)
		p.sample("luafw_callback_failures_total", float64(cs.Timeouts), append(lbl, "reason", "timeout")...)
		p.sample("luafw_callback_failures_total", float64(cs.Skipped), append(lbl, "reason", "quarantined")...)
		p.family("luafw_callback_latency_seconds", "histogram", "Callback latency, sampled (one call in 16).")
		var cum uint64
		for i, b := range host.LatencyBuckets() {
			cum += cs.Buckets[i]
			p.sample("luafw_callback_latency_seconds_bucket", float64(cum), append(lbl, "le", strconv.FormatFloat(b.Seconds(), 'g', -1, 64))...)
		}
		p.sample("luafw_callback_latency_seconds_bucket", float64(cs.Timed), append(lbl, "le", "+Inf")...)
		p.sample("luafw_callback_latency_seconds_sum", cs.Latency.Seconds(), lbl...)
		p.sample("luafw_callback_latency_seconds_count", float64(cs.Timed), lbl...)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

package daemon

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/procfs"

	"github.com/luafw/luafw/internal/engine"
)

// collector is the daemon's Prometheus collector. It keeps no metric state
// of its own: each scrape reads the counters the packet path already keeps
// (the engine's per-callback stats, the segments' verdict counts, the
// sockets' stats) and the kernel's queue table, so metrics cost nothing per
// packet. Docs: docs/metrics.md.
type collector struct {
	d *Daemon

	generation, reloads, restored, packets      *prometheus.Desc
	ctUpdates, ctApplied                        *prometheus.Desc
	queueReceived, queueErrors                  *prometheus.Desc
	kernelWaiting, kernelDropped                *prometheus.Desc
	quarantined, cbVerdicts, cbFailures, cbTime *prometheus.Desc
	pluginMemory, memoryOverruns                *prometheus.Desc
	streamEvents                                *prometheus.Desc
	housekeepingPause                           *prometheus.Desc
	inject                                      injectMetrics // inject_metrics.go
	info                                        infoMetrics   // info_metrics.go
}

func newCollector(d *Daemon) *collector {
	cb := []string{"plugin", "callback", "hook"}
	return &collector{d: d, inject: newInjectMetrics(), info: newInfoMetrics(),
		generation: prometheus.NewDesc("luafw_generation", "Id of the running set of plugins (it grows with each load).", nil, nil),
		reloads:    prometheus.NewDesc("luafw_reloads_total", "Reloads, by result (ok, failed).", []string{"result"}, nil),
		restored: prometheus.NewDesc("luafw_tables_restored_total",
			"Times luafw's tables were changed or removed by someone else and put back.", nil, nil),
		packets: prometheus.NewDesc("luafw_packets_total",
			"Packets decided, by segment (hook@chain priority) and verdict.", []string{"segment", "verdict"}, nil),
		ctUpdates: prometheus.NewDesc("luafw_ct_updates_total",
			"Conntrack updates handed to the updater (submitted), or dropped because its queue was full.", []string{"segment", "result"}, nil),
		ctApplied: prometheus.NewDesc("luafw_ct_updater_total",
			"What the conntrack updater did: applied (written to the entry), retried (the entry did not exist yet), failed (no entry within a second, or refused).", []string{"result"}, nil),
		queueReceived: prometheus.NewDesc("luafw_queue_received_total",
			"Packets received per socket (named by its first queue number).", []string{"queue"}, nil),
		queueErrors: prometheus.NewDesc("luafw_queue_errors_total",
			"Socket errors by kind: enobufs (the kernel dropped messages for this socket), send, recv, parse.", []string{"queue", "kind"}, nil),
		kernelWaiting: prometheus.NewDesc("luafw_kernel_queue_waiting",
			"Packets waiting in a kernel queue for a verdict (every queue of the namespace).", []string{"queue"}, nil),
		kernelDropped: prometheus.NewDesc("luafw_kernel_queue_dropped_total",
			"Packets the kernel dropped or, with fail open, accepted unseen: queue full (full), or undeliverable to the socket (user).", []string{"queue", "reason"}, nil),
		quarantined: prometheus.NewDesc("luafw_plugin_quarantined",
			"1 while a plugin is quarantined after repeated failures, else 0.", []string{"plugin"}, nil),
		pluginMemory: prometheus.NewDesc("luafw_plugin_memory_bytes",
			"Estimated memory a plugin's Lua state keeps across calls (the last measurement), and its limit.", []string{"plugin", "kind"}, nil),
		streamEvents: prometheus.NewDesc("luafw_stream_events_total",
			"What a plugin's stream tables (first-flight reassembly) did: segments placed, dups (retransmissions), ignored (bad checksum, outside the window), conflicts (overlaps that differ), evicted (flows dropped for room), expired (idle flows dropped).", []string{"plugin", "event"}, nil),
		memoryOverruns: prometheus.NewDesc("luafw_plugin_memory_overruns_total",
			"Times one of a plugin's Lua states went over its memory limit (it was quarantined and its states rebuilt).", []string{"plugin"}, nil),
		housekeepingPause: prometheus.NewDesc("luafw_housekeeping_pause_seconds",
			"Longest stretch of housekeeping (memory measurement, putting rebuilt plugin states in place, a switch of generation) a queue reader's worker did between two packets since the last scrape.", []string{"worker"}, nil),
		cbVerdicts: prometheus.NewDesc("luafw_callback_verdicts_total",
			"Callback calls by verdict (failed calls count under their on_error verdict).", append(cb, "verdict"), nil),
		cbFailures: prometheus.NewDesc("luafw_callback_failures_total",
			"Callback calls that failed, by reason: error, timeout (budget overrun), memory (cut at the process memory ceiling), quarantined (skipped), packet_budget (not run or cut off because the packet's budget over its hook's callbacks ran out; the packet got on_error, the plugin is not blamed).", append(cb, "reason"), nil),
		cbTime: prometheus.NewDesc("luafw_callback_latency_seconds",
			"Callback latency, sampled (one call in 16).", cb, nil),
	}
}

// Describe sends every family's description.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.generation, c.reloads, c.restored, c.packets, c.ctUpdates, c.ctApplied, c.queueReceived, c.queueErrors,
		c.kernelWaiting, c.kernelDropped, c.quarantined, c.pluginMemory, c.memoryOverruns, c.streamEvents, c.housekeepingPause, c.cbVerdicts, c.cbFailures, c.cbTime} {
		ch <- d
	}
	c.inject.describe(ch)
	c.info.describe(ch)
}

// Collect reads the counters. The registry groups samples into families
// and sorts them, so the order here does not matter.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	d := c.d
	ch <- prometheus.MustNewConstMetric(c.generation, prometheus.GaugeValue, float64(d.eng.Generation()))
	ch <- prometheus.MustNewConstMetric(c.reloads, prometheus.CounterValue, float64(d.reloads.Load()), "ok")
	ch <- prometheus.MustNewConstMetric(c.reloads, prometheus.CounterValue, float64(d.failed.Load()), "failed")
	ch <- prometheus.MustNewConstMetric(c.restored, prometheus.CounterValue, float64(d.restored.Load()))
	c.collectDaemon(ch)
	c.collectKernel(ch)
	for _, ps := range d.eng.Plugins() {
		q := 0.0
		if ps.Quarantined {
			q = 1
		}
		ch <- prometheus.MustNewConstMetric(c.quarantined, prometheus.GaugeValue, q, ps.Name)
		ch <- prometheus.MustNewConstMetric(c.pluginMemory, prometheus.GaugeValue, float64(ps.MemoryBytes), ps.Name, "used")
		ch <- prometheus.MustNewConstMetric(c.pluginMemory, prometheus.GaugeValue, float64(ps.MemoryLimit), ps.Name, "limit")
		ch <- prometheus.MustNewConstMetric(c.memoryOverruns, prometheus.CounterValue, float64(ps.MemoryOverruns), ps.Name)
		st := ps.Stream
		for event, n := range map[string]uint64{"segments": st.Segments, "dups": st.Dups, "ignored": st.Ignored,
			"conflicts": st.Conflicts, "evicted": st.Evicted, "expired": st.Expired} {
			ch <- prometheus.MustNewConstMetric(c.streamEvents, prometheus.CounterValue, float64(n), ps.Name, event)
		}
	}
	for _, wp := range d.eng.HousekeepingPauses() {
		ch <- prometheus.MustNewConstMetric(c.housekeepingPause, prometheus.GaugeValue, wp.Max.Seconds(), strconv.Itoa(wp.Worker))
	}
	c.collectCallbacks(ch)
	c.inject.collect(ch, d)
	c.info.collect(ch, d)
}

// collectDaemon reads the segments' and sockets' counters.
func (c *collector) collectDaemon(ch chan<- prometheus.Metric) {
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, s := range d.segStats {
		for v := range s.verdicts {
			ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(s.verdicts[v].Load()), k, engine.Verdict(v).String())
		}
		ch <- prometheus.MustNewConstMetric(c.ctUpdates, prometheus.CounterValue, float64(s.ctSubmit.Load()), k, "submitted")
		ch <- prometheus.MustNewConstMetric(c.ctUpdates, prometheus.CounterValue, float64(s.ctDrop.Load()), k, "dropped")
	}
	if d.updater != nil {
		st := d.updater.Stats()
		for result, n := range map[string]uint64{"applied": st.Applied, "retried": st.Retries, "failed": st.Failed} {
			ch <- prometheus.MustNewConstMetric(c.ctApplied, prometheus.CounterValue, float64(n), result)
		}
	}
	for _, r := range d.runners {
		for _, s := range r.socks {
			st, q := s.Stats(), strconv.Itoa(int(s.Info().Queues[0]))
			ch <- prometheus.MustNewConstMetric(c.queueReceived, prometheus.CounterValue, float64(st.Received), q)
			for kind, n := range map[string]uint64{"enobufs": st.ENOBUFS, "send": st.SendErrors, "recv": st.RecvErrors, "parse": st.ParseErrors} {
				ch <- prometheus.MustNewConstMetric(c.queueErrors, prometheus.CounterValue, float64(n), q, kind)
			}
		}
	}
}

// collectKernel reads the kernel's queue table of the namespace. Without
// it (no queue bound yet, or no NFQUEUE) the families are left out.
func (c *collector) collectKernel(ch chan<- prometheus.Metric) {
	qs, err := kernelQueues()
	if err != nil {
		return
	}
	for _, q := range qs {
		n := strconv.FormatUint(uint64(q.QueueID), 10)
		ch <- prometheus.MustNewConstMetric(c.kernelWaiting, prometheus.GaugeValue, float64(q.QueueTotal), n)
		ch <- prometheus.MustNewConstMetric(c.kernelDropped, prometheus.CounterValue, float64(q.QueueDropped), n, "full")
		ch <- prometheus.MustNewConstMetric(c.kernelDropped, prometheus.CounterValue, float64(q.QueueUserDropped), n, "user")
	}
}

// kernelQueues reads /proc/net/netfilter/nfnetlink_queue: the queues of
// the calling process's network namespace.
func kernelQueues() ([]procfs.NFNetLinkQueue, error) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return nil, err
	}
	return fs.NFNetLinkQueue()
}

// cbKey is a callback's series. The engine keys its stats by priority too;
// a callback whose priority changed in a reload keeps one series.
type cbKey struct{ plugin, name, hook string }

// collectCallbacks reads the engine's per-callback stats.
func (c *collector) collectCallbacks(ch chan<- prometheus.Metric) {
	merged := map[cbKey]*engine.CallbackStats{}
	var order []cbKey
	for _, cs := range c.d.eng.Stats() {
		k := cbKey{cs.Plugin, cs.Name, cs.Hook.String()}
		m, ok := merged[k]
		if !ok {
			merged[k] = &cs
			order = append(order, k)
			continue
		}
		m.Errors += cs.Errors
		m.Timeouts += cs.Timeouts
		m.Skipped += cs.Skipped
		m.Memory += cs.Memory
		m.OverBudget += cs.OverBudget
		m.Latency += cs.Latency
		m.Timed += cs.Timed
		for v, n := range cs.Verdicts {
			m.Verdicts[v] += n
		}
		for i, n := range cs.Buckets {
			m.Buckets[i] += n
		}
	}
	bounds := engine.LatencyBuckets()
	for _, k := range order {
		cs, lbl := merged[k], []string{k.plugin, k.name, k.hook}
		for v := range len(segStats{}.verdicts) {
			name := engine.Verdict(v).String()
			ch <- prometheus.MustNewConstMetric(c.cbVerdicts, prometheus.CounterValue, float64(cs.Verdicts[name]), append(lbl, name)...)
		}
		for reason, n := range map[string]uint64{"error": cs.Errors, "timeout": cs.Timeouts, "memory": cs.Memory, "quarantined": cs.Skipped, "packet_budget": cs.OverBudget} {
			ch <- prometheus.MustNewConstMetric(c.cbFailures, prometheus.CounterValue, float64(n), append(lbl, reason)...)
		}
		buckets := make(map[float64]uint64, len(bounds))
		var cum uint64
		for i, b := range bounds {
			cum += cs.Buckets[i]
			buckets[b.Seconds()] = cum
		}
		ch <- prometheus.MustNewConstHistogram(c.cbTime, cs.Timed, cs.Latency.Seconds(), buckets, lbl...)
	}
}

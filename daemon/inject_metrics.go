package daemon

import "github.com/prometheus/client_golang/prometheus"

// injectMetrics are the metric families of rewrites and injected packets
// (part of the daemon's collector; docs/metrics.md).
type injectMetrics struct {
	rewritten, injected *prometheus.Desc
}

func newInjectMetrics() injectMetrics {
	return injectMetrics{
		rewritten: prometheus.NewDesc("luafw_packets_rewritten_total",
			"Packets whose verdict carried bytes rewritten by callbacks, by segment.", []string{"segment"}, nil),
		injected: prometheus.NewDesc("luafw_injected_packets_total",
			"Packets scripts sent (fw.send, pkt:reply_*), by result: sent, dropped (the sender's queue was full), failed (the raw socket refused it).",
			[]string{"result"}, nil),
	}
}

func (m injectMetrics) describe(ch chan<- *prometheus.Desc) {
	ch <- m.rewritten
	ch <- m.injected
}

func (m injectMetrics) collect(ch chan<- prometheus.Metric, d *Daemon) {
	d.mu.Lock()
	for k, s := range d.segStats {
		ch <- prometheus.MustNewConstMetric(m.rewritten, prometheus.CounterValue, float64(s.rewritten.Load()), k)
	}
	inj := d.inj
	d.mu.Unlock()
	if inj == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(m.injected, prometheus.CounterValue, float64(inj.sent.Load()), "sent")
	ch <- prometheus.MustNewConstMetric(m.injected, prometheus.CounterValue, float64(inj.dropped.Load()), "dropped")
	ch <- prometheus.MustNewConstMetric(m.injected, prometheus.CounterValue, float64(inj.failed.Load()), "failed")
}

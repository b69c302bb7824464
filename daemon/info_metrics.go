package daemon

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/luafw/luafw/host/state"
)

// infoMetrics are the families that describe the process rather than its
// packets: the build, and the size of the scripts' state (part of the
// daemon's collector; docs/metrics.md).
type infoMetrics struct {
	build, entries, bytes *prometheus.Desc
}

func newInfoMetrics() infoMetrics {
	st := []string{"scope", "kind", "name"}
	return infoMetrics{
		build: prometheus.NewDesc("luafw_build_info",
			"Always 1; the labels name the running build's version and the Go version it was built with.", []string{"version", "goversion"}, nil),
		entries: prometheus.NewDesc("luafw_state_entries",
			"Keys stored in a state map or bucket family (expired ones count until the sweep drops them), by scope (node, cluster: the node's copy) and kind (map, bucket).", st, nil),
		bytes: prometheus.NewDesc("luafw_state_bytes",
			"What a state map's or bucket family's keys and values count against the state limit max_bytes.", st, nil),
	}
}

func (m infoMetrics) describe(ch chan<- *prometheus.Desc) {
	ch <- m.build
	ch <- m.entries
	ch <- m.bytes
}

// collect reads each map's and bucket family's counts: two atomic loads
// each, under the store's read lock for the names.
func (m infoMetrics) collect(ch chan<- prometheus.Metric, d *Daemon) {
	ch <- prometheus.MustNewConstMetric(m.build, prometheus.GaugeValue, 1, d.svc.version, runtime.Version())
	m.collectStore(ch, "node", d.eng.State())
	if d.cluster != nil {
		m.collectStore(ch, "cluster", d.cluster.Local())
	}
}

func (m infoMetrics) collectStore(ch chan<- prometheus.Metric, scope string, s *state.Store) {
	maps, _, buckets := s.Names()
	for _, name := range maps {
		if mp, ok := s.LookupMap(name); ok {
			ch <- prometheus.MustNewConstMetric(m.entries, prometheus.GaugeValue, float64(mp.Len()), scope, "map", name)
			ch <- prometheus.MustNewConstMetric(m.bytes, prometheus.GaugeValue, float64(mp.Bytes()), scope, "map", name)
		}
	}
	for _, name := range buckets {
		if b, ok := s.LookupBucket(name); ok {
			ch <- prometheus.MustNewConstMetric(m.entries, prometheus.GaugeValue, float64(b.Len()), scope, "bucket", name)
			ch <- prometheus.MustNewConstMetric(m.bytes, prometheus.GaugeValue, float64(b.Bytes()), scope, "bucket", name)
		}
	}
}

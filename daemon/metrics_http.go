package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Collector returns the daemon's Prometheus collector (luafw_* metrics),
// for an embedding program that serves its own registry.
func (d *Daemon) Collector() prometheus.Collector {
	return collectorList{newCollector(d), newOutputsCollector(d), newBanCollector(d)}
}

// MetricsHandler serves the daemon's metrics, with the Go runtime's and the
// process's, in the Prometheus exposition formats.
func (d *Daemon) MetricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(d.Collector(), newClusterCollector(d.cluster), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// HealthHandler answers 200 ("ok") while the daemon filters as
// configured: from the moment its rules are installed and its queue
// readers bound (when the service manager hears READY=1) until shutdown
// begins. Before that, while stopping, and while the watchdog finds a
// queue reader stuck (only under a service manager's watchdog), it answers
// 503 with the reason. A failed reload keeps it healthy: the running set
// still filters (luafw_reloads_total{result="failed"} tells).
func (d *Daemon) HealthHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		switch stuck := d.svc.stuck.Load(); d.svc.phase.Load() {
		case phaseStarting:
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "starting: rules and queue readers are not up yet")
		case phaseStopping:
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "stopping")
		default:
			if stuck == nil {
				fmt.Fprintf(w, "ok: generation %d\n", d.eng.Generation())
				return
			}
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "queue reader stuck: %s\n", *stuck)
		}
	})
}

// ServeMetrics serves Prometheus metrics (path /metrics) and the health
// check (path /healthz, HealthHandler) on ln (from ListenMetrics) until ctx
// is done, then closes ln.
func (d *Daemon) ServeMetrics(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", d.MetricsHandler())
	mux.Handle("/healthz", d.HealthHandler())
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

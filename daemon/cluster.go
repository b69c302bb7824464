package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/luafw/luafw/config"
	"github.com/luafw/luafw/host/state/cluster"
	"github.com/luafw/luafw/internal/engine"
)

// newClusterState builds the cluster state that cfg's state section asks
// for: nil for the local backend. It does not wait for Redis.
func newClusterState(cfg *config.File, log *slog.Logger) (*cluster.Store, error) {
	if cfg.State == nil || cfg.State.Backend != "redis" {
		return nil, nil
	}
	s := cfg.State
	// go-redis logs through one logger per process; a daemon has one
	// cluster state.
	redis.SetLogger(redisLogger{log})
	r := s.Redis
	password := r.Password
	if r.PasswordFile != "" {
		b, err := os.ReadFile(rel(cfg, r.PasswordFile))
		if err != nil {
			return nil, fmt.Errorf("state.redis.password_file: %w", err)
		}
		password = strings.TrimSpace(string(b))
	}
	sen := r.Sentinel
	senPassword := sen.Password
	if sen.PasswordFile != "" {
		b, err := os.ReadFile(rel(cfg, sen.PasswordFile))
		if err != nil {
			return nil, fmt.Errorf("state.redis.sentinel.password_file: %w", err)
		}
		senPassword = strings.TrimSpace(string(b))
	}
	tlsConf, err := redisTLS(cfg, r.TLS)
	if err != nil {
		return nil, err
	}
	addrs := r.Addrs
	if len(sen.Addrs) > 0 {
		addrs = sen.Addrs
	}
	if r.Auth == "none" {
		log.Warn("state.redis.auth: none: Redis is used without credentials; anyone who reaches it can ban, unban and drain limits on every node (docs/scale.md, Security)")
	}
	cl, err := cluster.New(cluster.Options{
		Addrs: addrs, Username: r.Username, Password: password, DB: r.DB, TLS: tlsConf,
		MasterName: sen.Master, SentinelUsername: sen.Username, SentinelPassword: senPassword,
		Prefix: r.Prefix, SyncInterval: time.Duration(s.SyncInterval), FallbackShare: s.FallbackShare,
		Logger: log,
	})
	if err != nil {
		return nil, err
	}
	// Wrong credentials or a refused TLS handshake are a configuration
	// mistake, not an outage: the start fails unless told otherwise. Redis
	// merely down is an outage: the node starts on local state.
	switch reason, err := cl.Probe(context.Background(), 3*time.Second); reason {
	case "auth", "tls":
		if r.OnAuthFailure != "local" {
			cl.Close()
			what := "refused the credentials (state.redis.username, password_file)"
			if reason == "tls" {
				what = "failed the TLS handshake (state.redis.tls)"
			}
			return nil, fmt.Errorf("state.redis: Redis at %s %s: %w; fix them, or set state.redis.on_auth_failure: local to start on local state", strings.Join(addrs, ", "), what, err)
		}
		log.Error("state.redis: Redis refused this node; starting on local state (on_auth_failure: local)", "reason", reason, "err", err)
	case "down":
		log.Warn("state.redis: Redis does not answer yet; starting on local state", "err", err)
	}
	return cl, nil
}

func redisTLS(cfg *config.File, t config.RedisTLS) (*tls.Config, error) {
	if !t.Enabled {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(rel(cfg, t.CAFile))
		if err != nil {
			return nil, fmt.Errorf("state.redis.tls.ca_file: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("state.redis.tls.ca_file %s: no certificate in it", t.CAFile)
		}
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(rel(cfg, t.CertFile), rel(cfg, t.KeyFile))
		if err != nil {
			return nil, fmt.Errorf("state.redis.tls: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// engineOptions are the engine's options for cfg, with cl (may be nil).
func engineOptions(cfg *config.File, log *slog.Logger, cl *cluster.Store) engine.Options {
	o := cfg.EngineOptions()
	o.Logger = log
	if cl != nil { // a nil *Store in the interface would not read as unset
		o.Cluster = cl
	}
	return o
}

func closeCluster(cl *cluster.Store) {
	if cl != nil {
		cl.Close()
	}
}

// keepStateBackend keeps the running state section: the backend holds the
// state and its connections, so it changes only on restart.
func (d *Daemon) keepStateBackend(cfg *config.File) {
	if !reflect.DeepEqual(cfg.State, d.cfg.State) {
		d.log.Warn("state changes only on restart; keeping the running backend")
		cfg.State = d.cfg.State
	}
}

// clusterCollector exports the cluster state's sync counts; nothing when
// the backend is local.
type clusterCollector struct {
	cl                                                           *cluster.Store
	connected, down, syncs, ops, disc, reconn, resyncs, lastSync *prometheus.Desc
	queued, authErrs, mismatch                                   *prometheus.Desc
}

func newClusterCollector(cl *cluster.Store) *clusterCollector {
	return &clusterCollector{cl: cl,
		connected: prometheus.NewDesc("luafw_cluster_connected", "1 while Redis answers the cluster state's syncs, else 0 (deciding on local state and fallback limits).", nil, nil),
		down:      prometheus.NewDesc("luafw_cluster_down", "1 for the reason Redis is unreachable (down: no answer, auth: credentials refused, tls: handshake failed), else 0.", []string{"reason"}, nil),
		syncs:     prometheus.NewDesc("luafw_cluster_syncs_total", "Pipelines sent to Redis, by result (ok, failed).", []string{"result"}, nil),
		ops:       prometheus.NewDesc("luafw_cluster_ops_total", "Cluster state operations, by what became of them (sent, received, dropped: queue full, stale: queued longer than the tombstone TTL, refused: Redis could not apply them).", []string{"op"}, nil),
		disc:      prometheus.NewDesc("luafw_cluster_disconnects_total", "Times Redis became unreachable.", nil, nil),
		reconn:    prometheus.NewDesc("luafw_cluster_reconnects_total", "Times Redis became reachable again and the state was reconciled.", nil, nil),
		resyncs:   prometheus.NewDesc("luafw_cluster_resyncs_total", "Cluster maps loaded again, by cause (gap: messages found missing, check: the anti-entropy check found the copy behind).", []string{"cause"}, nil),
		lastSync:  prometheus.NewDesc("luafw_cluster_last_sync_timestamp_seconds", "When the last sync pipeline succeeded (0: never).", nil, nil),
		queued:    prometheus.NewDesc("luafw_cluster_queued", "Cluster map writes waiting to be sent.", nil, nil),
		authErrs:  prometheus.NewDesc("luafw_cluster_auth_errors_total", "Attempts to reach Redis refused on credentials or permissions.", nil, nil),
		mismatch:  prometheus.NewDesc("luafw_cluster_bucket_mismatches_total", "Messages of other nodes charging a cluster bucket of the same name with another rate or burst.", nil, nil),
	}
}

func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.connected, c.down, c.syncs, c.ops, c.disc, c.reconn, c.resyncs, c.lastSync, c.queued, c.authErrs, c.mismatch} {
		ch <- d
	}
}

func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	if c.cl == nil {
		return
	}
	s := c.cl.Stats()
	up := 0.0
	if s.Connected {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(c.connected, prometheus.GaugeValue, up)
	for _, r := range []string{"down", "auth", "tls"} {
		v := 0.0
		if !s.Connected && s.Reason == r {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.down, prometheus.GaugeValue, v, r)
	}
	ch <- prometheus.MustNewConstMetric(c.syncs, prometheus.CounterValue, float64(s.Flushes), "ok")
	ch <- prometheus.MustNewConstMetric(c.syncs, prometheus.CounterValue, float64(s.FlushErrors), "failed")
	ch <- prometheus.MustNewConstMetric(c.ops, prometheus.CounterValue, float64(s.OpsSent), "sent")
	ch <- prometheus.MustNewConstMetric(c.ops, prometheus.CounterValue, float64(s.OpsReceived), "received")
	ch <- prometheus.MustNewConstMetric(c.ops, prometheus.CounterValue, float64(s.Dropped), "dropped")
	ch <- prometheus.MustNewConstMetric(c.ops, prometheus.CounterValue, float64(s.Stale), "stale")
	ch <- prometheus.MustNewConstMetric(c.ops, prometheus.CounterValue, float64(s.Refused), "refused")
	ch <- prometheus.MustNewConstMetric(c.disc, prometheus.CounterValue, float64(s.Disconnects))
	ch <- prometheus.MustNewConstMetric(c.reconn, prometheus.CounterValue, float64(s.Reconnects))
	ch <- prometheus.MustNewConstMetric(c.resyncs, prometheus.CounterValue, float64(s.Gaps), "gap")
	ch <- prometheus.MustNewConstMetric(c.resyncs, prometheus.CounterValue, float64(s.Repairs), "check")
	last := 0.0
	if !s.LastSync.IsZero() {
		last = float64(s.LastSync.UnixNano()) / 1e9
	}
	ch <- prometheus.MustNewConstMetric(c.lastSync, prometheus.GaugeValue, last)
	ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(s.Queued))
	ch <- prometheus.MustNewConstMetric(c.authErrs, prometheus.CounterValue, float64(s.AuthErrors))
	ch <- prometheus.MustNewConstMetric(c.mismatch, prometheus.CounterValue, float64(s.BucketMismatches))
}

// rel resolves p against the configuration's directory.
func rel(cfg *config.File, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(cfg.Path), p)
}

// redisLogger sends go-redis's own log lines (dial failures, pool
// events) to the daemon's log at debug level: the cluster state logs
// outages itself, once per transition.
type redisLogger struct{ log *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.log.DebugContext(ctx, "redis client: "+fmt.Sprintf(format, v...))
}

package config

import (
	"net"
	"time"
)

// State selects where the state scripts ask for with {scope = "cluster"}
// lives: "local" (default) keeps it in the daemon, "redis" shares it with
// every node using the same Redis and prefix (see docs/scale.md).
type State struct {
	// File is where the state maps and counters are saved (periodically
	// and at shutdown) and restored from at start; none when empty.
	File      string   `yaml:"file"`
	SaveEvery Duration `yaml:"save_every"` // default 60s
	Backend   string   `yaml:"backend"`
	Redis     Redis    `yaml:"redis"`
	// SyncInterval is how often writes are sent to Redis (default 100ms).
	SyncInterval Duration `yaml:"sync_interval"`
	// FallbackShare is the share, in (0, 1], of each cluster bucket's rate
	// and burst a node allows alone while Redis is unreachable (default 1;
	// 1/N for N nodes keeps the fleet's total).
	FallbackShare float64 `yaml:"fallback_share"`
}

// Redis is how to reach the Redis-protocol server(s).
type Redis struct {
	// Addrs are host:port of one server (without Sentinel).
	Addrs        []string `yaml:"addrs"`
	Username     string   `yaml:"username"`
	Password     string   `yaml:"password"`
	PasswordFile string   `yaml:"password_file"` // read at start; beats password
	// Auth is "none" to run without credentials on purpose (anyone who
	// reaches Redis can then change the fleet's state); empty otherwise.
	// Without it, a password, password_file or TLS client certificate is
	// required.
	Auth string `yaml:"auth"`
	// OnAuthFailure is what a start does when Redis refuses the
	// credentials or the TLS handshake: "fail" (default) or "local"
	// (start on local state and keep trying, as during an outage).
	OnAuthFailure string        `yaml:"on_auth_failure"`
	DB            int           `yaml:"db"`
	Prefix        string        `yaml:"prefix"` // of every key and the channel (default "luafw:")
	TLS           RedisTLS      `yaml:"tls"`
	Sentinel      RedisSentinel `yaml:"sentinel"`
}

// RedisSentinel finds the master through Redis Sentinel, which moves it
// to a replica when it fails.
type RedisSentinel struct {
	// Addrs are host:port of the sentinels; none: no Sentinel.
	Addrs []string `yaml:"addrs"`
	// Master is the name the sentinels monitor the master under.
	Master string `yaml:"master"`
	// Username and PasswordFile (or Password) authenticate to the
	// sentinels, when they ask for it.
	Username     string `yaml:"username"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
}

// RedisTLS configures TLS to Redis.
type RedisTLS struct {
	Enabled    bool   `yaml:"enabled"`
	CAFile     string `yaml:"ca_file"`   // default: the system's roots
	CertFile   string `yaml:"cert_file"` // client certificate, with key_file
	KeyFile    string `yaml:"key_file"`
	ServerName string `yaml:"server_name"` // default: the address's host
}

// MaxSyncInterval bounds state.sync_interval: slower than this, cluster
// limits stop meaning much.
const MaxSyncInterval = 10 * time.Second

func (f *File) checkState() error {
	if f.State == nil {
		return nil
	}
	s := *f.State
	switch s.Backend {
	case "", "local":
		if f.has("state.redis") {
			return f.ErrorAt("state.redis", "state.redis: set state.backend: redis to use it")
		}
		return nil
	case "redis":
	default:
		return f.ErrorAt("state.backend", "state.backend: want local or redis, not %q", s.Backend)
	}
	r := s.Redis
	sen := r.Sentinel
	switch {
	case len(sen.Addrs) > 0 && len(r.Addrs) > 0:
		return f.ErrorAt("state.redis.sentinel", "state.redis: addrs or sentinel.addrs, not both (with Sentinel the sentinels name the master)")
	case len(sen.Addrs) > 0 && sen.Master == "":
		return f.ErrorAt("state.redis.sentinel", "state.redis.sentinel.master: name the master the sentinels monitor")
	case len(sen.Addrs) == 0 && f.has("state.redis.sentinel"):
		return f.ErrorAt("state.redis.sentinel", "state.redis.sentinel.addrs: list at least one sentinel host:port")
	case len(sen.Addrs) == 0 && len(r.Addrs) == 0:
		return f.ErrorAt("state.redis", "state.redis.addrs: list at least one host:port")
	case len(r.Addrs) > 1:
		return f.ErrorAt("state.redis.addrs", "state.redis.addrs: one server (Redis Cluster is not supported; for failover use state.redis.sentinel)")
	}
	for i, a := range r.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return f.ErrorAt("state.redis.addrs", "state.redis.addrs[%d]: want host:port, not %q", i, a)
		}
	}
	for i, a := range sen.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return f.ErrorAt("state.redis.sentinel.addrs", "state.redis.sentinel.addrs[%d]: want host:port, not %q", i, a)
		}
	}
	hasCreds := r.Password != "" || r.PasswordFile != "" || r.TLS.CertFile != ""
	switch r.Auth {
	case "":
		if !hasCreds {
			return f.ErrorAt("state.redis", "state.redis: no credentials: set password_file (with username for an ACL user) or a TLS client certificate; "+
				"or auth: none to run without (then anyone who reaches Redis can ban and unban on every node)")
		}
	case "none":
		if hasCreds {
			return f.ErrorAt("state.redis.auth", "state.redis.auth: none, but credentials are set too; drop one")
		}
	default:
		return f.ErrorAt("state.redis.auth", "state.redis.auth: want none (or leave it out and give credentials), not %q", r.Auth)
	}
	switch r.OnAuthFailure {
	case "", "fail", "local":
	default:
		return f.ErrorAt("state.redis.on_auth_failure", "state.redis.on_auth_failure: want fail (default) or local, not %q", r.OnAuthFailure)
	}
	if s.Redis.DB < 0 {
		return f.ErrorAt("state.redis.db", "state.redis.db: want 0 or more, not %d", s.Redis.DB)
	}
	if (s.Redis.TLS.CertFile == "") != (s.Redis.TLS.KeyFile == "") {
		return f.ErrorAt("state.redis.tls", "state.redis.tls: cert_file and key_file go together")
	}
	if d := time.Duration(s.SyncInterval); f.has("state.sync_interval") && (d < time.Millisecond || d > MaxSyncInterval) {
		return f.ErrorAt("state.sync_interval", "state.sync_interval: want 1ms to %s (default 100ms), not %s", MaxSyncInterval, d)
	}
	if f.has("state.fallback_share") && !(s.FallbackShare > 0 && s.FallbackShare <= 1) {
		return f.ErrorAt("state.fallback_share", "state.fallback_share: want a number in (0, 1], not %v", s.FallbackShare)
	}
	return nil
}

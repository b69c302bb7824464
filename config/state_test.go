package config

import (
	"testing"
	"time"
)

func TestStateSection(t *testing.T) {
	const p = "plugins:\n  - file: a.lua\n"
	f, err := Parse([]byte(p+`state:
  backend: redis
  sync_interval: 50ms
  fallback_share: 0.5
  redis:
    addrs: [10.0.0.5:6379]
    username: luafw
    password_file: /etc/luafw/redis.pass
    prefix: "gw:"
    tls: {enabled: true, ca_file: ca.pem}
`), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := f.State
	if s.Backend != "redis" || time.Duration(s.SyncInterval) != 50*time.Millisecond || s.FallbackShare != 0.5 ||
		s.Redis.Addrs[0] != "10.0.0.5:6379" || s.Redis.Prefix != "gw:" || !s.Redis.TLS.Enabled || s.Redis.TLS.CAFile != "ca.pem" {
		t.Fatalf("parsed %+v", s)
	}

	for _, c := range []struct{ in, want string }{
		{"state: {backend: etcd}\n", `3: state.backend: want local or redis, not "etcd"`},
		{"state: {backend: redis}\n", `3: state.redis.addrs: list at least one host:port`},
		{"state:\n  backend: redis\n  redis: {addrs: [localhost]}\n", `5: state.redis.addrs[0]: want host:port, not "localhost"`},
		{"state:\n  redis: {addrs: [a:1]}\n", `4: state.redis: set state.backend: redis to use it`},
		{"state:\n  backend: redis\n  redis: {addrs: [a:1], auth: none}\n  fallback_share: 2\n", `6: state.fallback_share: want a number in (0, 1], not 2`},
		{"state:\n  backend: redis\n  redis: {addrs: [a:1], password_file: p}\n  sync_interval: 1m\n", `6: state.sync_interval: want 1ms to 10s (default 100ms), not 1m0s`},
		{"state:\n  backend: redis\n  redis: {addrs: [a:1]}\n", `5: state.redis: no credentials: set password_file (with username for an ACL user) or a TLS client certificate; or auth: none to run without (then anyone who reaches Redis can ban and unban on every node)`},
		{"state:\n  backend: redis\n  redis: {addrs: [a:1], auth: none, password: x}\n", `5: state.redis.auth: none, but credentials are set too; drop one`},
		{"state:\n  backend: redis\n  redis: {addrs: [a:1], auth: nope}\n", `5: state.redis.auth: want none (or leave it out and give credentials), not "nope"`},
		{"state:\n  backend: redis\n  redis: {addrs: [a:1], auth: none, on_auth_failure: ignore}\n", `5: state.redis.on_auth_failure: want fail (default) or local, not "ignore"`},
		{"state:\n  backend: redis\n  redis: {addrs: [a:1, b:1], auth: none}\n", `5: state.redis.addrs: one server (Redis Cluster is not supported; for failover use state.redis.sentinel)`},
		{"state:\n  backend: redis\n  redis: {auth: none, sentinel: {addrs: [a:26379]}}\n", `5: state.redis.sentinel.master: name the master the sentinels monitor`},
		{"state:\n  backend: redis\n  redis: {addrs: [a:1], auth: none, sentinel: {addrs: [a:26379], master: m}}\n", `5: state.redis: addrs or sentinel.addrs, not both (with Sentinel the sentinels name the master)`},
		{"state:\n  backend: redis\n  redis: {addrs: [a:1], tls: {cert_file: c.pem}}\n", `5: state.redis.tls: cert_file and key_file go together`},
		{"state: {backnd: redis}\n", `3: unknown key "backnd" in state; allowed: file, save_every, backend, redis, sync_interval, fallback_share`},
	} {
		_, err := Parse([]byte(p+c.in), "x.yaml")
		if err == nil || err.Error() != "x.yaml:"+c.want {
			t.Errorf("%q: error %v\nwant x.yaml:%s", c.in, err, c.want)
		}
	}
}

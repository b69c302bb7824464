package config

import "path/filepath"

// Credential is a file of the configuration that holds a secret.
type Credential struct {
	Key  string // where the configuration names it, e.g. "state.redis.password_file"
	Path string // relative paths resolved against the configuration's directory
	Line int    // the key's line in the configuration; 0 when unknown
}

// Credentials returns the secret files the configuration names (the Redis
// password file and TLS client key), for `luafw check` to warn when one
// lies where a plugin may read it.
func (f *File) Credentials() []Credential {
	if f.State == nil {
		return nil
	}
	var out []Credential
	add := func(key, p string) {
		if p == "" {
			return
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(f.Path), p)
		}
		out = append(out, Credential{Key: key, Path: p, Line: f.line(key)})
	}
	add("state.redis.password_file", f.State.Redis.PasswordFile)
	add("state.redis.tls.key_file", f.State.Redis.TLS.KeyFile)
	add("state.redis.sentinel.password_file", f.State.Redis.Sentinel.PasswordFile)
	return out
}

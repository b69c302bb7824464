package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckWarnsAboutCredentialsBesidePlugins: a Redis password file or
// TLS key inside a plugin's directory or an allowed directory is a warning
// on stderr (a plugin can read it), not a failure.
func TestCheckWarnsAboutCredentialsBesidePlugins(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"plugins", "lists", "secrets"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("plugins/x.lua", `fw.register{hook = "input", fn = function() return "accept" end}`)
	for _, f := range []string{"plugins/redis.pass", "lists/client.key", "secrets/redis.pass", "secrets/client.key"} {
		write(f, "hunter2\n")
	}
	config := func(pass, key string) string {
		return `allow_dirs: [lists]
state:
  backend: redis
  redis:
    addrs: ["127.0.0.1:6379"]
    password_file: ` + pass + `
    tls:
      enabled: true
      cert_file: secrets/client.crt
      key_file: ` + key + `
plugins:
  - file: plugins/x.lua
`
	}
	for _, tc := range []struct {
		name, pass, key string
		want            []string
	}{
		{"outside", "secrets/redis.pass", "secrets/client.key", nil},
		{"beside the plugin", "plugins/redis.pass", "secrets/client.key", []string{"state.redis.password_file"}},
		{"in allow_dirs", "secrets/redis.pass", "lists/client.key", []string{"state.redis.tls.key_file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			write("luafw.yaml", config(tc.pass, tc.key))
			var stdout, stderr strings.Builder
			code := run(context.Background(), []string{"check", filepath.Join(dir, "luafw.yaml")}, &stdout, &stderr)
			if code != 0 {
				t.Fatalf("exit %d, want 0 (a warning is no failure); stderr:\n%s", code, stderr.String())
			}
			if tc.want == nil && strings.Contains(stderr.String(), "warning") {
				t.Errorf("unexpected warning:\n%s", stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), "warning") || !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks a warning about %s:\n%s", w, stderr.String())
				}
			}
			if strings.Contains(stderr.String(), "hunter2") {
				t.Errorf("the warning quotes the secret:\n%s", stderr.String())
			}
		})
	}
}

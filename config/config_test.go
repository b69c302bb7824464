package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/luafw/luafw/internal/watchdog"

	"github.com/luafw/luafw/internal/engine"
)

func TestParse(t *testing.T) {
	f, err := Parse([]byte(`
plugins:
  - file: a.lua
    options: {ports: [22, 23], name: x}
    on_error: drop
    budget: 5ms
  - file: /abs/b.lua
    name: bee
  - file: c.lua
    disabled: true
budget: 1s
queue: {balance: 2, base: 2000}
divert:
  forward: {protos: [tcp, 47], src: [10.0.0.0/8, 192.0.2.1]}
offload: {mask: 0x100}
marks: {skip: 0x1000000}
log: {format: json}
`), "/etc/luafw/luafw.yaml")
	if err != nil {
		t.Fatal(err)
	}
	specs, err := f.PluginSpecs()
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 2 {
		t.Fatalf("%d specs, want 2 (one disabled)", len(specs))
	}
	a, b := specs[0], specs[1]
	if a.File != "/etc/luafw/a.lua" || a.OnError != engine.Drop || a.Budget != 5*time.Millisecond {
		t.Errorf("a = %+v", a)
	}
	if ports := a.Options["ports"].([]any); len(ports) != 2 || ports[0] != 22 {
		t.Errorf("a options = %v", a.Options)
	}
	if b.File != "/abs/b.lua" || b.Name != "bee" || b.Budget != time.Second || b.OnError != engine.Accept {
		t.Errorf("b = %+v (the config's default budget applies)", b)
	}
	if f.Queue.Balance != 2 || f.Queue.Base != 2000 || f.Offload.Mask != 0x100 || *f.Marks.Skip != 0x1000000 || f.Log.Format != "json" {
		t.Errorf("daemon settings: %+v", f)
	}
	protos, _ := f.Divert["forward"].ProtoNumbers()
	src, _, _ := f.Divert["forward"].Prefixes()
	if len(protos) != 2 || protos[0] != 6 || protos[1] != 47 || len(src) != 2 || src[1].String() != "192.0.2.1/32" {
		t.Errorf("divert: protos %v src %v", protos, src)
	}
	if !f.ConntrackEnabled() {
		t.Error("conntrack should default to on")
	}
}

func TestLoadAndEmpty(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "empty.yaml")
	os.WriteFile(p, []byte("# nothing but a comment\n"), 0o644)
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), p+":1: the configuration is empty") {
		t.Fatalf("empty file: %v, want it refused with file:1", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Fatal("a missing file loaded")
	}
	os.WriteFile(filepath.Join(dir, "a.lua"), nil, 0o644)
	os.Mkdir(filepath.Join(dir, "d.lua"), 0o755)
	for _, c := range []struct{ in, want string }{
		{"plugins:\n  - file: a.lua\n  - file: nope.lua\n", ":3: file: plugin nope.lua does not exist (looked for " + filepath.Join(dir, "nope.lua") + ")"},
		{"plugins:\n  - file: d.lua\n", ":2: file: plugin d.lua is not a regular file"},
	} {
		cfg := filepath.Join(dir, "c.yaml")
		os.WriteFile(cfg, []byte(c.in), 0o644)
		if _, err := Load(cfg); err == nil || err.Error() != cfg+c.want {
			t.Errorf("%q: error %v, want %s%s", c.in, err, cfg, c.want)
		}
	}
	// A disabled plugin's file is not needed.
	cfg := filepath.Join(dir, "ok.yaml")
	os.WriteFile(cfg, []byte("plugins:\n  - file: a.lua\n  - {file: gone.lua, disabled: true}\n"), 0o644)
	if _, err := Load(cfg); err != nil {
		t.Errorf("disabled plugin with a missing file: %v", err)
	}
}

func TestFailMode(t *testing.T) {
	for _, c := range []struct {
		in               string
		closed, queueOpn bool
	}{
		{"", false, true},
		{"fail: open\n", false, true},
		{"fail: closed\n", true, false},
		{"fail: closed\nqueue: {fail_open: true}\n", true, true},
		{"queue: {fail_open: false}\n", false, false},
	} {
		f, err := Parse([]byte(c.in+"plugins: [{file: a.lua}]\n"), "x.yaml")
		if err != nil {
			t.Fatalf("%q: %v", c.in, err)
		}
		if f.FailClosed() != c.closed || f.QueueFailOpen() != c.queueOpn {
			t.Errorf("%q: FailClosed %v QueueFailOpen %v, want %v %v", c.in, f.FailClosed(), f.QueueFailOpen(), c.closed, c.queueOpn)
		}
	}
}

func TestAllowDirs(t *testing.T) {
	f, err := Parse([]byte(`
allow_dirs: [lists, /srv/shared]
plugins:
  - file: a.lua
  - file: b.lua
    allow_dirs: [/var/lib/feeds, b-lists]
`), "/etc/luafw/luafw.yaml")
	if err != nil {
		t.Fatal(err)
	}
	specs, err := f.PluginSpecs()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"/etc/luafw/lists", "/srv/shared"},
		{"/etc/luafw/lists", "/srv/shared", "/var/lib/feeds", "/etc/luafw/b-lists"},
	}
	for i, s := range specs {
		if strings.Join(s.AllowDirs, " ") != strings.Join(want[i], " ") {
			t.Errorf("plugin %d: AllowDirs %q, want %q", i, s.AllowDirs, want[i])
		}
	}
}

func TestMemoryAndStateLimits(t *testing.T) {
	f, err := Parse([]byte(`
memory_limit: 1GiB
plugin_memory: 32MiB
memory_check: 500ms
state_limits: {max_keys: 1000, max_bytes: 4MiB, max_value: 512}
plugins:
  - file: a.lua
    memory: 8MiB
  - file: b.lua
`), "/etc/luafw/luafw.yaml")
	if err != nil {
		t.Fatal(err)
	}
	specs, err := f.PluginSpecs()
	if err != nil {
		t.Fatal(err)
	}
	if specs[0].Memory != 8<<20 || specs[1].Memory != 32<<20 {
		t.Errorf("plugin memory %d, %d; want 8 MiB, and the 32 MiB default", specs[0].Memory, specs[1].Memory)
	}
	o := f.EngineOptions()
	if o.MemoryLimit != 1<<30 || o.MemoryCheckInterval != 500*time.Millisecond {
		t.Errorf("engine options %+v", o)
	}
	if l := o.StateLimits; l.MaxKeys != 1000 || l.MaxBytes != 4<<20 || l.MaxValue != 512 {
		t.Errorf("state limits %+v", l)
	}
	// Without a configuration (a single plugin file), or without the key,
	// the ceiling is the default.
	var none *File
	if none.MemoryCeiling() != watchdog.DefaultMemoryLimit || none.EngineOptions().MemoryLimit != watchdog.DefaultMemoryLimit {
		t.Error("a nil File has no default ceiling")
	}
	for in, want := range map[string]int64{"4096": 4096, "64KiB": 64 << 10, "1.5GiB": 3 << 29, "10 MiB": 10 << 20, "7B": 7} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1MiB", "12XB", "1e30GiB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
	if _, err := Parse([]byte("memory_limit: lots\n"), "x.yaml"); err == nil || !strings.Contains(err.Error(), "bad size") {
		t.Errorf("a bad size: %v", err)
	}
}

// A configuration over MaxFileSize is refused with the limit, unread.
func TestLoadSizeLimit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.yaml")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(64 << 30); err != nil {
		t.Skip(err)
	}
	f.Close()
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "larger than the limit of 4194304 bytes") {
		t.Fatalf("64 GiB config: %v", err)
	}
}

package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/luafw/luafw/host"
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
	if a.File != "/etc/luafw/a.lua" || a.OnError != host.Drop || a.Budget != 5*time.Millisecond {
		t.Errorf("a = %+v", a)
	}
	if ports := a.Options["ports"].([]any); len(ports) != 2 || ports[0] != 22 {
		t.Errorf("a options = %v", a.Options)
	}
	if b.File != "/abs/b.lua" || b.Name != "bee" || b.Budget != time.Second || b.OnError != host.Accept {
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

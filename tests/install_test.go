package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMakeInstall: `make install DESTDIR=...` puts the binary (reporting the
// version it was built with), the systemd unit pointing at it, the docs,
// the plugins (without their tests), man pages, completions and a loadable
// configuration naming the plugins under PREFIX in place, and leaves an
// existing configuration alone.
func TestMakeInstall(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("skipping: make not installed")
	}
	dest := t.TempDir()
	makeIn := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("make", append([]string{"-C", "..", "--no-print-directory"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("make %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	makeIn("install", "DESTDIR="+dest, "PREFIX=/opt/lfw", "VERSION=v9.9.9-test", "BIN="+filepath.Join(t.TempDir(), "luafw"))

	bin := filepath.Join(dest, "opt/lfw/bin/luafw")
	out, err := exec.Command(bin, "--version").Output()
	if err != nil || strings.TrimSpace(string(out)) != "luafw v9.9.9-test" {
		t.Errorf("installed luafw --version: %q %v", out, err)
	}
	unit, err := os.ReadFile(filepath.Join(dest, "opt/lfw/lib/systemd/system/luafw.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "ExecStart=/opt/lfw/bin/luafw run --config /etc/luafw/luafw.yaml",
		"ExecReload=/opt/lfw/bin/luafw reload", "WatchdogSec=", "Before=network-pre.target"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("installed unit lacks %q", want)
		}
	}
	for _, p := range []string{"share/doc/luafw/operating.md", "share/luafw/plugins/connlog.lua", "share/luafw/plugins/lists/blocklist.sample.txt",
		"share/man/man8/luafw.8", "share/man/man5/luafw.yaml.5", "share/bash-completion/completions/luafw",
		"share/luafw/editor/luafw.d.lua", "share/luafw/editor/luacheckrc.lua"} {
		if _, err := os.Stat(filepath.Join(dest, "opt/lfw", p)); err != nil {
			t.Error(err)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(dest, "opt/lfw/share/luafw/plugins/*_test.lua")); len(m) > 0 {
		t.Errorf("plugin tests installed: %v", m)
	}
	// The configuration names the plugins under PREFIX; check it as luafw
	// will see it once DESTDIR is the root.
	cfg := filepath.Join(dest, "etc/luafw/luafw.yaml")
	text, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(text), "file: /opt/lfw/share/luafw/plugins/connlog.lua") {
		t.Errorf("the installed configuration does not name the plugins under PREFIX:\n%s", text)
	}
	staged := filepath.Join(t.TempDir(), "luafw.yaml")
	if err := os.WriteFile(staged, []byte(strings.ReplaceAll(string(text), "/opt/lfw/", filepath.Join(dest, "opt/lfw")+"/")), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "check", staged).CombinedOutput(); err != nil || !strings.Contains(string(out), "connlog") {
		t.Errorf("luafw check of the installed configuration: %v\n%s", err, out)
	}

	// A second install keeps the operator's configuration.
	if err := os.WriteFile(cfg, []byte("plugins: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := makeIn("install", "DESTDIR="+dest, "PREFIX=/opt/lfw", "BIN="+filepath.Join(t.TempDir(), "luafw")); !strings.Contains(out, "keeping") {
		t.Errorf("second install did not say it kept the configuration:\n%s", out)
	}
	if b, _ := os.ReadFile(cfg); string(b) != "plugins: []\n" {
		t.Errorf("second install overwrote the configuration: %q", b)
	}
	if _, err := exec.LookPath("systemd-analyze"); err == nil {
		makeIn("verify-unit")
	}
}

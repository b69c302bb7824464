package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMakeInstall: `make install DESTDIR=...` puts the binary (reporting the
// version it was built with), the systemd unit pointing at it, the
// operating guide and a loadable example configuration in place, and
// leaves an existing configuration alone.
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
	for _, f := range []string{"share/doc/luafw/operating.md", "share/luafw/editor/luafw.d.lua", "share/luafw/editor/luacheckrc.lua"} {
		if _, err := os.Stat(filepath.Join(dest, "opt/lfw", f)); err != nil {
			t.Error(err)
		}
	}
	cfg := filepath.Join(dest, "etc/luafw/luafw.yaml")
	if out, err := exec.Command(bin, "check", cfg).CombinedOutput(); err != nil {
		t.Errorf("luafw check of the installed example: %v\n%s", err, out)
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

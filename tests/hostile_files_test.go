package tests

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The file boundary, on luafw replay: net.load of files out of bounds.

// fileProbe is one net.load a plugin tries at load, and a path that names
// a missing file the same way: the two loads must fail with the same error
// text (but for the path), so that a script cannot tell which files exist.
type fileProbe struct {
	name, path, missing string
}

func fileProbes() []fileProbe {
	up := strings.Repeat("../", 12)
	return []fileProbe{
		{"absolute-shadow", "/etc/shadow", "/etc/shadox"},
		{"absolute-passwd", "/etc/passwd", "/etc/passwx"},
		{"proc-environ", "/proc/self/environ", "/proc/self/environx"},
		{"dotdot", up + "etc/passwd", up + "etc/passwx"},
		{"dotdot-via-lists", "lists/" + up + "etc/passwd", "lists/" + up + "etc/passwx"},
		{"symlink-file", "lists/passwd-link", "lists/passwx-link"},
		{"symlink-dir", "lists/etc-link/passwd", "lists/etc-link/passwx"},
	}
}

// fileBoundaryDir makes a plugin directory with an allowed list and
// symlinks that lead out of it (one to /etc/passwd, one to /etc, one to a
// missing file), and returns it.
func fileBoundaryDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"lists/ok.txt": "10.0.0.0/8\n192.0.2.1\n"})
	for link, target := range map[string]string{"passwd-link": "/etc/passwd", "passwx-link": "/etc/passwx", "etc-link": "/etc"} {
		if err := os.Symlink(target, filepath.Join(dir, "lists", link)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// netLoadPlugin is a plugin whose top level loads path.
func netLoadPlugin(path string) string {
	return fmt.Sprintf("local s = net.load(%q)\nfw.register{hook = \"forward\", fn = function(pkt) if s:contains(pkt.src) then return fw.DROP end end}\n", path)
}

// secretsOf returns strings that must not appear in an error about path:
// 12-byte pieces of the file's lines, and for /proc/self/environ the
// canary the test puts in the child's environment.
func secretsOf(t *testing.T, path, canary string) []string {
	t.Helper()
	if strings.HasSuffix(path, "environ") {
		return []string{canary}
	}
	b, err := os.ReadFile("/etc/" + filepath.Base(strings.TrimSuffix(path, "-link")))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		for i := 0; i+12 <= len(line); i += 4 {
			out = append(out, line[i:i+12])
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s has no line to look for", path)
	}
	return out
}

// TestHostileFileBoundary: net.load reads only files under the directories
// the configuration allows. A plugin that reaches out (an absolute path,
// `..`, /proc, a symlink) fails to load, with an error that shows nothing
// of the file and reads the same as for a file that does not exist.
func TestHostileFileBoundary(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: /etc/shadow is the file a plugin must not read")
	}
	bin := luafwBinary(t)
	dir := fileBoundaryDir(t)
	canary := fmt.Sprintf("LUAFW_HOSTILE_CANARY_%d", time.Now().UnixNano())
	writeFiles(t, dir, map[string]string{"luafw.yaml": "plugins:\n  - file: hostile.lua\n    on_error: drop\n"})
	writeHostilePcap(t, filepath.Join(dir, "hostile.pcap"), []byte("x"), 1)
	load := func(path string) (string, error) {
		writeFiles(t, dir, map[string]string{"hostile.lua": netLoadPlugin(path)})
		ctx, cancel := context.WithTimeout(context.Background(), hostileCaseTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "replay", "--config", filepath.Join(dir, "luafw.yaml"), "--pcap", filepath.Join(dir, "hostile.pcap"))
		cmd.Env = append(os.Environ(), "LUAFW_CANARY="+canary)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		return stderr.String(), err
	}
	if out, err := load("lists/ok.txt"); err != nil {
		t.Fatalf("loading a list inside the plugin's directory: %v\n%s", err, out)
	}
	for _, p := range fileProbes() {
		t.Run(p.name, func(t *testing.T) {
			out, err := load(p.path)
			if err == nil {
				t.Fatalf("net.load(%q) loaded", p.path)
			}
			checkNoSecrets(t, out, secretsOf(t, p.path, canary))
			missOut, missErr := load(p.missing)
			if missErr == nil {
				t.Fatalf("net.load(%q) of a missing file loaded", p.missing)
			}
			got, want := loadError(out, dir, p.path), loadError(missOut, dir, p.missing)
			if got != want {
				t.Errorf("an existing file out of bounds and a missing one fail differently:\n  %s\n  %s", got, want)
			}
			t.Logf("%s", got)
		})
	}
}

// checkNoSecrets fails the test if out shows any of secrets. It does not
// print out: that would copy the secret into the test log.
func checkNoSecrets(t *testing.T, out string, secrets []string) {
	t.Helper()
	for _, s := range secrets {
		if i := strings.Index(out, s); i >= 0 {
			t.Fatalf("the error (%d bytes) shows the file's content at byte %d (not printed here)", len(out), i)
		}
	}
}

// loadError is luafw replay's error line with the path replaced by PATH
// (see normalizePath).
func loadError(stderr, dir, path string) string {
	line := ""
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "luafw replay:") {
			line = l
		}
	}
	return normalizePath(line, dir, path)
}

// normalizePath replaces path in line, in every form an error may give it,
// by PATH, and the plugin's directory by DIR.
func normalizePath(line, dir, path string) string {
	abs := filepath.Join(dir, path)
	forms := []string{abs, filepath.Clean(abs), path, filepath.Base(path)}
	if resolved, err := filepath.EvalSymlinks(filepath.Dir(abs)); err == nil {
		forms = append(forms, filepath.Join(resolved, filepath.Base(path)))
	}
	for _, f := range forms {
		line = strings.ReplaceAll(line, f, "PATH")
	}
	return strings.ReplaceAll(line, dir, "DIR")
}

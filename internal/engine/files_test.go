package engine

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// fileTree is a plugin directory and, beside it, files a plugin must not
// read: root/plugin/p.lua, root/secret.txt (a bad CIDR list whose first
// line is a secret), root/extra/ok.txt (a good list).
type fileTree struct {
	root, plugin, extra, secret string
}

const secretLine = "TOP-SECRET-LINE"

func newFileTree(t *testing.T) fileTree {
	t.Helper()
	root := t.TempDir()
	ft := fileTree{root: root, plugin: filepath.Join(root, "plugin"), extra: filepath.Join(root, "extra"),
		secret: filepath.Join(root, "secret.txt")}
	for _, d := range []string{ft.plugin, ft.extra} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(t, ft.secret, secretLine+"\n")
	write(t, filepath.Join(ft.extra, "ok.txt"), "192.0.2.0/24\n")
	write(t, filepath.Join(ft.plugin, "good.txt"), "# fine\n198.51.100.0/24\n")
	write(t, filepath.Join(ft.plugin, "bad.txt"), "10.0.0.0/8\nnot-an-address\n")
	return ft
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// loadWith loads a plugin file in ft.plugin whose top level is code.
func (ft fileTree) loadWith(t *testing.T, code string, allow ...string) error {
	t.Helper()
	file := filepath.Join(ft.plugin, "p.lua")
	write(t, file, code+"\nfw.register{hook='input', fn=function() end}\n")
	e, _ := newTestEngine(t)
	return e.Load([]PluginSpec{{File: file, AllowDirs: allow}})
}

func refusal(file, given string) string {
	return file + ":1: net.load: \"" + given + "\" is not a readable file in the plugin's allowed directories"
}

func TestNetLoadRefusesPathsOutside(t *testing.T) {
	ft := newFileTree(t)
	if err := os.Symlink(ft.secret, filepath.Join(ft.plugin, "link.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(ft.root, filepath.Join(ft.plugin, "up")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(ft.plugin, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(ft.plugin, "p.lua")
	for name, given := range map[string]string{
		"absolute":          ft.secret,
		"etc passwd":        "/etc/passwd",
		"dot dot":           "../secret.txt",
		"deep dot dot":      "../../../../../../../../" + ft.secret,
		"proc self environ": "/proc/self/environ",
		"proc via dot dot":  "../../../../../../../../proc/self/environ",
		"symlink to file":   "link.txt",
		"symlink to dir":    "up/secret.txt",
		"directory":         ".",
		"fifo inside":       "fifo",
		"missing":           "nope.txt",
		"dir outside":       ft.root,
	} {
		t.Run(name, func(t *testing.T) {
			err := ft.loadWith(t, "net.load(\""+given+"\")")
			if err == nil {
				t.Fatalf("net.load(%q) was allowed", given)
			}
			if want := refusal(file, given); err.Error() != want {
				t.Fatalf("error %q,\nwant  %q", err, want)
			}
		})
	}
}

// A script must not tell a forbidden existing file from a missing one.
func TestNetLoadRefusalRevealsNothing(t *testing.T) {
	ft := newFileTree(t)
	code := `net.load("../secret.txt")`
	exists := ft.loadWith(t, code)
	if err := os.Remove(ft.secret); err != nil {
		t.Fatal(err)
	}
	missing := ft.loadWith(t, code)
	if exists == nil || missing == nil {
		t.Fatalf("loaded: exists %v, missing %v", exists, missing)
	}
	if exists.Error() != missing.Error() {
		t.Fatalf("errors differ:\n%q\n%q", exists, missing)
	}
	if strings.Contains(exists.Error(), secretLine) {
		t.Fatalf("error reveals the file's content: %q", exists)
	}
	// A pcall at the top level sees the same message either way.
	write(t, ft.secret, secretLine+"\n")
	probe := `local ok, err = pcall(net.load, "../secret.txt")
		assert(not ok and not err:find("` + secretLine + `", 1, true) and err:find("not a readable file", 1, true), err)`
	if err := ft.loadWith(t, probe); err != nil {
		t.Fatal(err)
	}
}

func TestNetLoadAllowedDirs(t *testing.T) {
	ft := newFileTree(t)
	if err := os.Symlink(filepath.Join(ft.extra, "ok.txt"), filepath.Join(ft.plugin, "extra-link.txt")); err != nil {
		t.Fatal(err)
	}
	code := `local a = net.load("good.txt")
		local b = net.load("` + filepath.Join(ft.extra, "ok.txt") + `")
		local c = net.load("../extra/ok.txt")
		local d = net.load("extra-link.txt")
		assert(a:contains("198.51.100.7") and b:contains("192.0.2.1") and c:contains("192.0.2.1") and d:size() == 1)`
	if err := ft.loadWith(t, code); err == nil || !strings.Contains(err.Error(), "not a readable file") {
		t.Fatalf("without AllowDirs: %v, want a refusal", err)
	}
	if err := ft.loadWith(t, code, ft.extra); err != nil {
		t.Fatalf("with AllowDirs: %v", err)
	}
	// An allowed directory reached through a symlink works too: both
	// sides are resolved.
	link := filepath.Join(ft.root, "extra-dir-link")
	if err := os.Symlink(ft.extra, link); err != nil {
		t.Fatal(err)
	}
	if err := ft.loadWith(t, code, link); err != nil {
		t.Fatalf("AllowDirs through a symlink: %v", err)
	}
}

func TestNetLoadBadLineNamesFileAndLine(t *testing.T) {
	ft := newFileTree(t)
	err := ft.loadWith(t, `net.load("bad.txt")`)
	want := filepath.Join(ft.plugin, "bad.txt") + ":2: bad entry: not an address or prefix"
	if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "not-an-address") {
		t.Fatalf("error %v, want it to contain %q and not the line", err, want)
	}
}

// A plugin given as Source has no directory of its own: only AllowDirs.
func TestNetLoadSourcePluginHasOnlyAllowDirs(t *testing.T) {
	ft := newFileTree(t)
	spec := PluginSpec{File: filepath.Join(ft.plugin, "p.lua"), Source: []byte(`net.load("good.txt")
		fw.register{hook='input', fn=function() end}`)}
	e, _ := newTestEngine(t)
	if err := e.Load([]PluginSpec{spec}); err == nil || !strings.Contains(err.Error(), "not a readable file") {
		t.Fatalf("Source plugin read its File's directory: %v", err)
	}
	spec.AllowDirs = []string{ft.plugin}
	if err := e.Load([]PluginSpec{spec}); err != nil {
		t.Fatal(err)
	}
}

func TestAllowDirsMustBeDirectories(t *testing.T) {
	ft := newFileTree(t)
	for _, d := range []string{filepath.Join(ft.root, "missing"), ft.secret} {
		err := ft.loadWith(t, `-- nothing read`, d)
		if err == nil || !strings.Contains(err.Error(), "allowed directory "+d) {
			t.Errorf("AllowDirs %s: %v, want a load error naming it", d, err)
		}
	}
}

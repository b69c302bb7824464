package editor

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/luafw/luafw/internal/engine"
)

const repo = "../.."

// The checked-in files are what the registry generates now.
func TestCheckedInFilesAreGenerated(t *testing.T) {
	for name, want := range Files() {
		got, err := os.ReadFile(filepath.Join(repo, "dist", "editor", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("dist/editor/%s differs from a fresh generation: run go run ./internal/editor/gen", name)
		}
	}
}

// Every name of the script API is in the definitions file, the luacheck
// standard and docs/lua-api.md.
func TestEveryAPINameIsDefinedAndDocumented(t *testing.T) {
	defs, rc := string(Files()[DefsFile]), string(Files()[LuacheckFile])
	doc, err := os.ReadFile(filepath.Join(repo, "docs", "lua-api.md"))
	if err != nil {
		t.Fatal(err)
	}
	classes, global := map[string]string{}, map[string]bool{}
	for _, tb := range engine.APITables() {
		classes[tb.Name], global[tb.Name] = tb.Class, tb.Global
	}
	for _, n := range engine.APINames() {
		if !regexp.MustCompile(`(?m)^---@class ` + regexp.QuoteMeta(classes[n.Table]) + `\n(---@field .*\n)*---@field ` + regexp.QuoteMeta(n.Name) + ` `).MatchString(defs) {
			t.Errorf("%s.%s is not a field of %s in %s", n.Table, n.Name, classes[n.Table], DefsFile)
		}
		// luacheck knows the globals' fields (fw.priority.raw too), not the
		// fields of values such as pkt.
		root, _, _ := strings.Cut(n.Table, ".")
		if global[root] && !strings.Contains(rc, "\t"+n.Name+" = ") {
			t.Errorf("%s.%s is not in %s", n.Table, n.Name, LuacheckFile)
		}
		if !strings.Contains(string(doc), docForm(n)) {
			t.Errorf("%s.%s: docs/lua-api.md lacks %q", n.Table, n.Name, docForm(n))
		}
	}
}

// docForm is how docs/lua-api.md writes a name: fw.DROP, pkt:set_mark,
// pkt.ct:set_mark, and the methods of values as ":name(".
func docForm(n engine.APIName) string {
	switch {
	case n.Table == "fw.priority":
		return "`" + n.Name + "`"
	case n.Method() && !strings.HasPrefix(n.Table, "pkt"):
		return ":" + n.Name + "("
	case n.Method():
		return n.Table + ":" + n.Name
	}
	return n.Table + "." + n.Name
}

// The shipped plugins, their tests and docs/examples pass luacheck with
// the generated configuration.
func TestLuacheckPluginsAndExamples(t *testing.T) {
	luacheck, err := exec.LookPath("luacheck")
	if err != nil {
		if os.Geteuid() == 0 {
			t.Fatal("luacheck is missing: run scripts/deps.sh (it installs Debian's lua-check)")
		}
		t.Skip("luacheck is missing and not root: scripts/deps.sh installs Debian's lua-check as root")
	}
	cmd := exec.Command(luacheck, "--config", filepath.Join("dist", "editor", LuacheckFile), "--no-color", "--formatter", "plain", "plugins", "docs/examples")
	cmd.Dir = repo
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("luacheck: %v\n%s", err, out)
	}
}

// luacheck with the generated standard finds what a plugin author most
// often gets wrong: a misspelled API name and a global set by a callback.
func TestLuacheckFindsMistakes(t *testing.T) {
	luacheck, err := exec.LookPath("luacheck")
	if err != nil {
		t.Skip("luacheck is missing (scripts/deps.sh installs it as root)")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "bad.lua")
	if err := os.WriteFile(file, []byte("fw.register{hook = \"input\", fn = function(pkt)\n\thits = 1\n\treturn fw.DORP\nend}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(luacheck, "--config", filepath.Join(repo, "dist", "editor", LuacheckFile), "--no-color", "--formatter", "plain", file).CombinedOutput()
	if err == nil {
		t.Fatalf("luacheck passed a bad file:\n%s", out)
	}
	for _, want := range []string{"bad.lua:2:2: setting non-standard global variable 'hits'", "bad.lua:3:9: accessing undefined field 'DORP' of global 'fw'"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("luacheck output lacks %q:\n%s", want, out)
		}
	}
}

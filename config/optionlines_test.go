package config

import (
	"os"
	"path/filepath"
	"testing"
)

// PluginSpecs says where each option is, so that the engine can name the
// configuration's line for a bad one (fw.schema).
func TestPluginSpecsOptionLines(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.lua"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "luafw.yaml")
	yaml := "plugins:\n  - file: a.lua\n  - file: a.lua\n    name: b\n    options:\n      ports: [22]\n\n      rat: 5/min\n"
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	specs, err := f.PluginSpecs()
	if err != nil {
		t.Fatal(err)
	}
	if specs[0].Config != p || len(specs[0].OptionLines) != 0 {
		t.Errorf("first plugin: config %q, lines %v", specs[0].Config, specs[0].OptionLines)
	}
	if l := specs[1].OptionLines; specs[1].Config != p || l["ports"] != 6 || l["rat"] != 8 {
		t.Errorf("second plugin: config %q, lines %v; want ports 6, rat 8", specs[1].Config, l)
	}
}

package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// luafw check finds the misspelled API names a load would miss until a
// packet came, each with file:line; warnings are printed, and --strict
// makes them errors.
func TestCheckStaticChecks(t *testing.T) {
	dir := t.TempDir()
	bad := write(t, dir, "fwd_policy.lua", `fw.register{hook = "forward", fn = function(pkt)
	if pkt.dprot == 23 then
		return fw.DORP
	end
	pkt:set_mrak(1)
end}
`)
	code, _, errs := runCLI("check", bad)
	if code != 1 {
		t.Fatalf("exit %d, want 1: %s", code, errs)
	}
	for _, want := range []string{
		bad + ":2: pkt.dprot: no such field in pkt (did you mean pkt.dport?)",
		bad + ":3: fw.DORP: no such field in fw (did you mean fw.DROP?)",
		bad + ":5: pkt.set_mrak: no such field in pkt (did you mean pkt.set_mark?)",
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}

	warn := write(t, dir, "counter.lua", "fw.register{hook = \"input\", fn = function(pkt)\n\thits = (hits or 0) + 1\nend}\n")
	code, out, errs := runCLI("check", warn)
	if code != 0 || !strings.Contains(out, "ok: 1 plugins") {
		t.Fatalf("exit %d, want 0 with a warning: %s%s", code, out, errs)
	}
	if want := "luafw check: warning: " + warn + ":2: global hits is assigned inside a function"; !strings.Contains(errs, want) || strings.Count(errs, "global hits") != 1 {
		t.Fatalf("stderr lacks %q once:\n%s", want, errs)
	}
	if code, _, errs := runCLI("check", "--strict", warn); code != 1 || !strings.Contains(errs, warn+":2: global hits") {
		t.Fatalf("--strict: exit %d, want 1: %s", code, errs)
	}
}

// luafw check --options prints what a plugin declares with fw.schema, and
// a misspelled option in a configuration is refused at its line.
func TestCheckOptions(t *testing.T) {
	code, out, errs := runCLI("check", "--options", "../../plugins/ratelimit.lua")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"OPTION", "ports      ports                  {22}       destination ports limited", "v6_prefix  integer 4..128"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	dir := t.TempDir()
	cfg := write(t, dir, "luafw.yaml", "plugins:\n  - file: "+absPlugin(t, "ratelimit.lua")+"\n    options:\n      port: [2222]\n")
	code, _, errs = runCLI("check", cfg)
	if want := cfg + `:4: plugin ratelimit: option "port" is unknown (did you mean ports?)`; code != 1 || !strings.Contains(errs, want) {
		t.Fatalf("exit %d, want 1 and %q: %s", code, want, errs)
	}
}

func absPlugin(t *testing.T, name string) string {
	p, err := filepath.Abs(filepath.Join("../../plugins", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

package tests

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Hostile top levels: a plugin's top level runs at load (twice: to check
// it, and in each worker) with 2 s and its memory limit. One that runs too
// long or keeps or builds too much must fail the load, soon and with its
// file named, and the process's peak RSS must stay bounded.

// loadCase is a hostile top level.
type loadCase struct {
	name, top string
	want      string // in the load error
}

func loadCases() []loadCase {
	return []loadCase{
		{"loop", `while true do end`, "did not finish"},
		{"pcall-loop", `pcall(function() while true do end end) while true do end`, "did not finish"},
		{"pattern", `string.rep("a", 400):find("a*a*a*a*b")`, "did not finish"},
		{"keep", `keep = {}
for i = 1, 100 do keep[i] = string.rep("k" .. i, 250000) end`, "memory"},
		{"doubling", `local s = string.rep("x", 1048576)
for i = 1, 30 do s = s .. s end`, "memory"},
	}
}

// TestHostileLoad runs luafw replay on each hostile top level.
func TestHostileLoad(t *testing.T) {
	bin := luafwBinary(t)
	for _, c := range loadCases() {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{
				"luafw.yaml":  "plugins:\n  - {file: hostile.lua, on_error: drop}\n",
				"hostile.lua": c.top + "\nfw.register{hook = \"forward\", fn = function(pkt) end}\n",
			})
			writeHostilePcap(t, filepath.Join(dir, "hostile.pcap"), nil, 1)
			ctx, cancel := context.WithTimeout(context.Background(), hostileCaseTimeout)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "replay", "--config", filepath.Join(dir, "luafw.yaml"), "--pcap", filepath.Join(dir, "hostile.pcap"))
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			start := time.Now()
			err := cmd.Run()
			wall := time.Since(start)
			if ctx.Err() != nil {
				t.Fatalf("luafw replay did not finish within %v: the load was not cut off", hostileCaseTimeout)
			}
			if err == nil {
				t.Fatalf("the plugin loaded:\n%s", firstLines(stderr.String(), 10))
			}
			peak, perr := peakRSS(cmd.ProcessState)
			if perr != nil {
				t.Fatal(perr)
			}
			msg := loadError(stderr.String(), dir, "hostile.lua")
			t.Logf("failed after %v, peak RSS %d MiB: %s", wall.Round(time.Millisecond), peak>>10, msg)
			if !strings.Contains(stderr.String(), c.want) {
				t.Errorf("the load error does not say %q:\n%s", c.want, firstLines(stderr.String(), 10))
			}
			if peak > hostilePeakKiB {
				t.Errorf("peak RSS %d MiB, want at most %d MiB", peak>>10, hostilePeakKiB>>10)
			}
		})
	}
}

package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCmdTestExitCodes runs `luafw test` on the plugintest fixtures: a
// failing assertion exits 1 with its file:line, a passing suite 0, usage
// errors 2.
func TestCmdTestExitCodes(t *testing.T) {
	fixtures := filepath.Join("..", "..", "plugintest", "testdata")
	failing := filepath.Join(fixtures, "failing")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string // substrings of stdout+stderr
	}{
		{"failing", []string{failing}, 1, []string{
			"--- FAIL: " + filepath.Join(failing, "deny_test.lua") + ": wrong verdict",
			"    " + filepath.Join(failing, "deny_test.lua") + ":9: verdict drop",
			"\n1 passed, 3 failed\n",
		}},
		{"passing", []string{"-run", "^passes$", failing}, 0, []string{"\n1 passed, 0 failed\n"}},
		{"verbose", []string{"-v", filepath.Join(fixtures, "api")}, 0, []string{"=== RUN", "--- PASS", "17 passed, 0 failed"}},
		{"bad flag", []string{"-bogus"}, 2, []string{"luafw test: flag provided but not defined: -bogus"}},
		{"bad regexp", []string{"-run", "(", failing}, 2, []string{"-run"}},
		{"missing path", []string{"no/such/dir"}, 2, []string{"no/such/dir"}},
		{"no test files", []string{"."}, 1, []string{"no *_test.lua files"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			code := run(context.Background(), append([]string{"test"}, tc.args...), &stdout, &stderr)
			all := stdout.String() + stderr.String()
			if code != tc.code {
				t.Errorf("exit %d, want %d; output:\n%s", code, tc.code, all)
			}
			for _, w := range tc.want {
				if !strings.Contains("\n"+all, w) {
					t.Errorf("output lacks %q:\n%s", w, all)
				}
			}
		})
	}
}

// TestCmdTestHostile: `luafw test -timeout 1s` stops an endless test and a
// catastrophic pattern within the timeout plus slack, and refuses an
// allow_dirs outside the test's tree; each exits 1 with the reason.
// (Cases that could be fatal without the sandbox run in child processes in
// plugintest's hostile_test.go.)
func TestCmdTestHostile(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"loop", `test("loop", function() while true do end end)`, "did not finish within 1s"},
		{"pattern", `test("p", function() string.find(string.rep("a", 100000), string.rep("a*", 30) .. "b") end)`, "did not finish within 1s"},
		{"allow_dirs", `test("etc", function() harness("x.lua", {}, { allow_dirs = { "/etc" } }) end)`, `"/etc" is not inside the test's directory tree`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "h_test.lua")
			if err := os.WriteFile(file, []byte(tc.src), 0o644); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr strings.Builder
			start := time.Now()
			code := run(context.Background(), []string{"test", "-timeout", "1s", file}, &stdout, &stderr)
			took := time.Since(start)
			if code != 1 || !strings.Contains(stdout.String(), tc.want) || !strings.Contains(stdout.String(), "h_test.lua:1:") {
				t.Errorf("exit %d, want 1 and %q at h_test.lua:1; output:\n%s%s", code, tc.want, stdout.String(), stderr.String())
			}
			if took > 10*time.Second {
				t.Errorf("ran %v with -timeout 1s", took)
			}
		})
	}
}

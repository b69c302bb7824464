package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
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
		{"bad flag", []string{"-bogus"}, 2, []string{"usage: luafw test"}},
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

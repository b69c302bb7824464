package plugintest

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// runPaths runs the test files under paths and returns the summary and
// the output.
func runPaths(t *testing.T, opts Options, paths ...string) (Summary, string) {
	t.Helper()
	files, err := Find(paths)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no test files in %v", paths)
	}
	var out strings.Builder
	opts.Out = &out
	sum := Run(context.Background(), files, opts)
	return sum, out.String()
}

func wantLines(t *testing.T, out string, lines ...string) {
	t.Helper()
	have := strings.Split(out, "\n")
	for _, l := range lines {
		found := false
		for _, h := range have {
			if h == l {
				found = true
			}
		}
		if !found {
			t.Errorf("output lacks the line %q; output:\n%s", l, out)
		}
	}
}

// TestAPI runs the fixture suite that exercises the whole test API; every
// test in it must pass.
func TestAPI(t *testing.T) {
	sum, out := runPaths(t, Options{}, "testdata/api")
	if sum.Failed != 0 || sum.Passed != 17 {
		t.Errorf("summary %+v, want 17 passed, 0 failed; output:\n%s", sum, out)
	}
	wantLines(t, out, "17 passed, 0 failed")
}

// TestFailingAssertions checks that failures are reported with the test
// file's line, that assertions do not stop a test and fail() does.
func TestFailingAssertions(t *testing.T) {
	sum, out := runPaths(t, Options{}, "testdata/failing")
	if sum.Passed != 1 || sum.Failed != 3 {
		t.Errorf("summary %+v, want 1 passed, 3 failed", sum)
	}
	f := filepath.Join("testdata", "failing", "deny_test.lua")
	wantLines(t, out,
		"--- FAIL: "+f+": wrong verdict",
		"    "+f+":9: verdict drop (by deny, at input), want accept",
		"    "+f+":10: arithmetic: got 2, want 3",
		"    "+f+":11: expected a true value, got false",
		"--- FAIL: "+f+": fail stops",
		"    "+f+":15: giving up",
		"--- FAIL: "+f+": lua error",
		"    "+f+":21: attempt to index a non-table object(nil) with key 'field'",
		"1 passed, 3 failed",
	)
	if strings.Contains(out, "never reached") {
		t.Errorf("an assertion after fail() ran:\n%s", out)
	}
	if strings.Contains(out, "--- PASS") || strings.Contains(out, "=== RUN") {
		t.Errorf("non-verbose output lists passing tests:\n%s", out)
	}
}

func TestVerboseAndFilter(t *testing.T) {
	f := filepath.Join("testdata", "failing", "deny_test.lua")
	sum, out := runPaths(t, Options{Verbose: true, Run: regexp.MustCompile("^pass")}, f)
	if sum.Passed != 1 || sum.Failed != 0 {
		t.Errorf("summary %+v, want only the one matching test, passed", sum)
	}
	wantLines(t, out, "=== RUN   "+f+": passes", "--- PASS: "+f+": passes", "1 passed, 0 failed")
	if strings.Contains(out, "wrong verdict") {
		t.Errorf("-run ran a test it does not match:\n%s", out)
	}
}

// TestBrokenFiles checks errors outside assertions: each is one failed
// test with the place of the problem.
func TestBrokenFiles(t *testing.T) {
	dir := filepath.Join("testdata", "broken")
	for _, tc := range []struct{ file, line string }{
		{"syntax_test.lua", `syntax_test.lua:3: syntax error near "end"`},
		{"loaderr_test.lua", "loaderr_test.lua:1: harness: " + filepath.Join(dir, "bad.lua") + ":4: '}' expected (to close '{' at line 1) near <eof>"},
		{"toplevel_test.lua", "toplevel_test.lua:2: top level broke"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			sum, out := runPaths(t, Options{}, filepath.Join(dir, tc.file))
			if sum.Failed != 1 || sum.Passed != 0 {
				t.Errorf("summary %+v, want 1 failed", sum)
			}
			wantLines(t, out, "--- FAIL: "+filepath.Join(dir, tc.file)+": (top level)")
			if !strings.Contains(out, "    "+filepath.Join(dir, tc.line)) {
				t.Errorf("output lacks %q:\n%s", tc.line, out)
			}
		})
	}
}

// TestTimeout checks that a test that never ends is cut off and the rest
// of its file is not run.
func TestTimeout(t *testing.T) {
	f := filepath.Join("testdata", "broken", "loop_test.lua")
	sum, out := runPaths(t, Options{Timeout: 200 * time.Millisecond, Verbose: true}, f)
	if sum.Failed != 1 || sum.Passed != 0 {
		t.Errorf("summary %+v, want 1 failed and the next test not run", sum)
	}
	if !strings.Contains(out, "test file did not finish within 200ms") {
		t.Errorf("output does not say why:\n%s", out)
	}
	if !strings.Contains(out, f+":2:") {
		t.Errorf("output lacks the line of the loop:\n%s", out)
	}
}

func TestFind(t *testing.T) {
	files, err := Find([]string{"."})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 0 {
		t.Errorf("Find(.) = %v: testdata directories must be skipped", files)
	}
	files, err = Find([]string{"testdata"})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 6 || files[0] != filepath.Join("testdata", "api", "api_test.lua") {
		t.Errorf("Find(testdata) = %v", files)
	}
	if _, err := Find([]string{"no/such/dir"}); err == nil {
		t.Error("Find of a missing path: no error")
	}
}

// TestCaptureBy: a decision says which plugin asked for the packet to be
// captured.
func TestCaptureBy(t *testing.T) {
	sum, out := runPaths(t, Options{}, "testdata/capture")
	if sum.Failed != 0 || sum.Passed != 1 {
		t.Errorf("summary %+v, want 1 passed; output:\n%s", sum, out)
	}
}

// TestExpectOptionsChecked: expect_options_checked fails a plugin that
// declares no options and passes one whose schema refuses bad values.
func TestExpectOptionsChecked(t *testing.T) {
	sum, out := runPaths(t, Options{}, "testdata/options")
	if sum.Passed != 1 || sum.Failed != 1 {
		t.Errorf("summary %+v, want 1 passed, 1 failed; output:\n%s", sum, out)
	}
	if !strings.Contains(out, "unchecked.lua declares no options (fw.schema)") {
		t.Errorf("output lacks the reason:\n%s", out)
	}
}

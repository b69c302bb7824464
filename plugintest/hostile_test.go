package plugintest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Hostile test files: each runs as `luafw test` would run it, in a child
// process (a Go fatal error cannot be recovered and would end this one),
// and must fail cleanly with its reason, within its timeout plus slack.

const (
	childEnv     = "PLUGINTEST_HOSTILE_FILE"
	childTimeout = 3 * time.Second
	// hostileSlack is generous: the point is that a run stops, not how
	// fast (a busy CI machine runs these beside everything else).
	hostileSlack = 7 * time.Second
)

// TestHostileChild is the child: it runs the test file named in childEnv
// with a 3 s timeout, stopped by SIGINT/SIGTERM as `luafw test` is, and
// exits 1 when a test failed.
func TestHostileChild(t *testing.T) {
	file := os.Getenv(childEnv)
	if file == "" {
		t.Skip("the child of TestHostileTestFiles")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	timeout := childTimeout
	if d, err := time.ParseDuration(os.Getenv(childEnv + "_TIMEOUT")); err == nil {
		timeout = d
	}
	sum := Run(ctx, []string{file}, Options{Out: os.Stdout, Timeout: timeout})
	if sum.Failed > 0 || ctx.Err() != nil {
		os.Exit(1)
	}
	os.Exit(0)
}

// runChild runs the test file src (written into a fresh directory with
// the plugin x.lua beside it) in a child process; signal, when not nil, is
// sent after a second. It returns the child's output, exit code and how
// long it ran.
func runChild(t *testing.T, src string, timeout time.Duration, sig os.Signal) (string, int, time.Duration) {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "hostile_test.lua")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	plugin := `fw.register{hook = "input", fn = function() return "drop" end}`
	if err := os.WriteFile(filepath.Join(dir, "x.lua"), []byte(plugin), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHostileChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+file, childEnv+"_TIMEOUT="+timeout.String())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if sig != nil {
		time.AfterFunc(time.Second, func() { _ = cmd.Process.Signal(sig) })
	}
	err := cmd.Wait()
	took := time.Since(start)
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("child: %v\n%s", err, out.String())
	}
	return out.String(), code, took
}

func TestHostileTestFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("child processes")
	}
	for _, tc := range []struct {
		name string
		src  string
		want []string // in the output
	}{
		{"huge string.rep", `test("rep", function() local s = string.rep("x", 2^40) end)`,
			[]string{"hostile_test.lua:1:", "string.rep", "exceeds the sandbox limit"}},
		{"catastrophic pattern", `test("pattern", function()
			string.find(string.rep("a", 100000), string.rep("a*", 30) .. "b")
		end)`, []string{"hostile_test.lua:2:", "interrupted", "did not finish within 3s"}},
		{"infinite loop", `test("loop", function() while true do end end)`,
			[]string{"hostile_test.lua:1:", "interrupted", "did not finish within 3s"}},
		{"infinite loop at the top level", `while true do end`,
			[]string{"(top level)", "did not finish within 3s"}},
		{"doubling concat", `test("concat", function() local s = string.rep("x", 2^20) while true do s = s .. s end end)`,
			[]string{"hostile_test.lua:1:", "memory"}},
		{"heap growth", `test("heap", function()
			local t, s = {}, string.rep("x", 2^20)
			for i = 1, 1e7 do t[i] = s .. i end
		end)`, []string{"hostile_test.lua:", "memory"}},
		{"deep tables to expect_eq", `test("deep", function()
			local a, b = {}, {}
			local x, y = a, b
			for i = 1, 1000 do x.n, y.n = {}, {}; x, y = x.n, y.n end
			expect_eq(a, b)
		end)`, []string{"hostile_test.lua:5:", "nested deeper than"}},
		{"getfenv", `test("getfenv", function() getfenv(1) end)
			test("setfenv", function() setfenv(1, {}) end)
			test("newproxy", function() newproxy(true) end)`,
			[]string{"0 passed, 3 failed", "hostile_test.lua:1:", "hostile_test.lua:2:", "hostile_test.lua:3:"}},
		{"allow_dirs /etc", `test("etc", function() harness("x.lua", {}, { allow_dirs = { "/etc" } }) end)`,
			[]string{"hostile_test.lua:1:", `"/etc" is not inside the test's directory tree`}},
		{"allow_dirs ../../", `test("up", function() harness("x.lua", {}, { allow_dirs = { "../../" } }) end)`,
			[]string{"hostile_test.lua:1:", `"../../" is not inside the test's directory tree`}},
		{"plugin file /etc/shadow", `test("shadow", function() harness("/etc/shadow") end)`,
			[]string{"hostile_test.lua:1:", `"/etc/shadow" is not inside`}},
		{"plugin file /proc/self/environ", `test("environ", function() harness("../../../../../../proc/self/environ") end)`,
			[]string{"hostile_test.lua:1:", "is not inside"}},
		{"config outside", `test("cfg", function() harness_config("/etc/passwd") end)`,
			[]string{"hostile_test.lua:1:", "is not inside"}},
		{"tostring", `test("tostring", function()
			local s = tostring({}) .. " " .. tostring(print)
			print(s, {f = print})
			fail(s)
		end)`, []string{"table: 0x", "function: 0x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code, took := runChild(t, tc.src, childTimeout, nil)
			t.Logf("stopped after %v", took.Round(time.Millisecond))
			if code != 1 {
				t.Errorf("exit %d, want 1; output:\n%s", code, out)
			}
			if strings.Contains(out, "fatal error") || strings.Contains(out, "goroutine ") {
				t.Errorf("the child died:\n%s", out)
			}
			if !strings.Contains(out, "--- FAIL") {
				t.Errorf("no test reported failed:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if took > childTimeout+hostileSlack {
				t.Errorf("ran %v, want under %v", took, childTimeout+hostileSlack)
			}
		})
	}
}

// goAddr is a Go address as gopher-lua prints objects (%p: at most 12 hex
// digits in user space).
var goAddr = regexp.MustCompile(`\b(table|function|userdata|thread): 0x[0-9a-f]{1,12}\b`)

// TestHostileTostringShowsNoGoAddress: tostring and print in a test file
// show tostring's opaque ids (16 hex digits), never a Go address (at most
// 12).
func TestHostileTostringShowsNoGoAddress(t *testing.T) {
	if testing.Short() {
		t.Skip("child processes")
	}
	out, _, _ := runChild(t, `test("t", function() print(tostring({}), print, {f = print}); fail("x") end)`, childTimeout, nil)
	for _, line := range strings.Split(out, "\n") {
		if goAddr.MatchString(line) {
			t.Errorf("a Go address in %q", line)
		}
	}
	if !strings.Contains(out, "table: 0x") {
		t.Errorf("no tostring output:\n%s", out)
	}
}

// TestHostileSignalStopsRun: SIGTERM and SIGINT stop a run whose timeout
// is far away, promptly, with the test reported failed and why.
func TestHostileSignalStopsRun(t *testing.T) {
	if testing.Short() {
		t.Skip("child processes")
	}
	for _, tc := range []struct {
		name string
		sig  os.Signal
		src  string
	}{
		{"SIGTERM loop", syscall.SIGTERM, `test("loop", function() while true do end end)`},
		{"SIGINT pattern", os.Interrupt, `test("pattern", function()
			string.find(string.rep("a", 100000), string.rep("a*", 30) .. "b")
		end)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code, took := runChild(t, tc.src, time.Hour, tc.sig)
			t.Logf("stopped after %v (signal at 1s)", took.Round(time.Millisecond))
			if code != 1 {
				t.Errorf("exit %d, want 1; output:\n%s", code, out)
			}
			if !strings.Contains(out, "--- FAIL") || !strings.Contains(out, "signal received") {
				t.Errorf("want the test failed with the signal as reason:\n%s", out)
			}
			if took > time.Second+hostileSlack {
				t.Errorf("ran %v after a signal at 1s", took)
			}
		})
	}
}

package plugintest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/metrics"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/luafw/luafw/internal/engine"
	"github.com/luafw/luafw/internal/watchdog"

	lua "github.com/luafw/luafw/lua"
	"github.com/luafw/luafw/lua/parse"
)

// Defaults of Options.
const (
	// DefaultBudget is the time budget of a plugin under test that sets
	// none. It is far above the engine's own default (2 ms) because tests
	// check what a plugin decides, not how fast: a busy machine must not
	// turn a verdict into an on_error one. Tests of budget behaviour set
	// budget= explicitly.
	DefaultBudget = time.Second
	// DefaultTimeout bounds one test file.
	DefaultTimeout = 5 * time.Minute
	// DefaultMemoryLimit is the process ceiling of a run that sets none:
	// the daemon's default. The plugins' engines cut their calls, and the
	// test file's watchdog its own state, once the Go heap passes half of
	// it.
	DefaultMemoryLimit = watchdog.DefaultMemoryLimit
	// MaxFileSize bounds a test file's source.
	MaxFileSize = 4 << 20
	// maxOutput bounds the output (print, log lines, failures) kept per
	// test; past it one line says how much was left out.
	maxOutput = 1 << 20
	// heapCheckInterval is how often a test file's watchdog reads the heap.
	heapCheckInterval = 2 * time.Millisecond
)

// EpochUnix is where every test file's fake clock starts:
// 2025-01-01T00:00:00Z, in Unix seconds.
const EpochUnix = 1735689600

// Suffix names test files.
const Suffix = "_test.lua"

// Options configure a run.
type Options struct {
	// Out receives the results, formatted like go test's; nil discards.
	Out io.Writer
	// Verbose adds === RUN and --- PASS lines and shows every test's
	// output (log lines, print), not only failed tests'.
	Verbose bool
	// Run, when set, runs only the tests whose name it matches.
	Run *regexp.Regexp
	// Timeout bounds each test file; DefaultTimeout when 0.
	Timeout time.Duration
	// Budget is the budget of plugins that set none; DefaultBudget when 0.
	Budget time.Duration
	// MemoryLimit is the process ceiling in bytes (DefaultMemoryLimit when
	// 0): the test file's state is cut off, and its plugins' calls are,
	// once the Go heap passes half of it. The program should also call
	// watchdog.SetMemoryCeiling with it (`luafw test` does).
	MemoryLimit int64
	// Root, when set, is the directory tree every path a test file names
	// (plugin files, configurations, allow_dirs, and the plugin files and
	// allowed directories its configurations name) must lie in, after ".."
	// and symlinks are resolved. By default each test file's own
	// directory.
	Root string
}

func (o Options) memoryLimit() int64 {
	if o.MemoryLimit > 0 {
		return o.MemoryLimit
	}
	return DefaultMemoryLimit
}

func (o Options) budget() time.Duration {
	if o.Budget > 0 {
		return o.Budget
	}
	return DefaultBudget
}

// Summary counts tests (not assertions).
type Summary struct {
	Files  int
	Passed int
	Failed int
}

// String is the closing line: "N passed, N failed".
func (s Summary) String() string { return fmt.Sprintf("%d passed, %d failed", s.Passed, s.Failed) }

// Find returns the test files under paths: a directory is searched
// recursively for *_test.lua files (skipping directories named testdata
// or starting with "." or "_", as go test does), a file is taken as it is.
// The result is sorted within each path. A path that does not exist is an
// error.
func Find(paths []string) ([]string, error) {
	var files []string
	for _, root := range paths {
		info, err := os.Stat(root)
		if err != nil {
			return nil, fmt.Errorf("plugintest: %w", err)
		}
		if !info.IsDir() {
			files = append(files, root)
			continue
		}
		var found []string
		err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			name := d.Name()
			if d.IsDir() {
				if path != root && (name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
					return filepath.SkipDir
				}
				return nil
			}
			if strings.HasSuffix(name, Suffix) {
				found = append(found, path)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("plugintest: searching %s: %w", root, err)
		}
		sort.Strings(found)
		files = append(files, found...)
	}
	return files, nil
}

// Run runs the test files one after another, writes each result and then
// the closing line "N passed, N failed" to opts.Out, and returns the
// counts. It stops early when ctx is done.
func Run(ctx context.Context, files []string, opts Options) Summary {
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	var sum Summary
	for _, f := range files {
		if ctx.Err() != nil {
			fmt.Fprintf(opts.Out, "interrupted: %v\n", context.Cause(ctx))
			break
		}
		s := runFile(ctx, f, opts)
		sum.Files++
		sum.Passed += s.Passed
		sum.Failed += s.Failed
	}
	fmt.Fprintln(opts.Out, sum)
	return sum
}

// fakeClock is a test file's clock: it moves only when told.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) Now() time.Time { return time.Unix(0, c.ns.Load()).UTC() }

func (c *fakeClock) set(t time.Time) { c.ns.Store(t.UnixNano()) }

// advance moves the file's clock by d, running the timers (fw.every,
// fw.after) of its harnesses that fall due on the way, in the order they
// fall due, each with the clock at its time. It stops when ctx ends (the
// file's timeout: a 100 ms timer and a clock moved by years).
func (fr *fileRun) advance(ctx context.Context, d time.Duration) error {
	end := fr.clock.Now().Add(d)
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("clock.advance: timers still running: %w", err)
		}
		var first *harness
		var at time.Time
		for _, h := range fr.harnesses {
			if h.eng == nil {
				continue
			}
			if next, ok := h.eng.NextTimer(); ok && !next.After(end) && (first == nil || next.Before(at)) {
				first, at = h, next
			}
		}
		if first == nil {
			break
		}
		if at.After(fr.clock.Now()) {
			fr.clock.set(at)
		}
		first.eng.RunDueTimers()
	}
	fr.clock.set(end)
	return nil
}

// testCase is one test() of a file.
type testCase struct {
	name string
	fn   *lua.LFunction
}

// result is what one test (or a file's top level) produced.
type result struct {
	name   string
	failed bool
	lines  []string // failures, log lines and print output, in order

	size    int // bytes in lines
	dropped int // lines left out past maxOutput
}

// fileRun is one test file being run.
type fileRun struct {
	path  string
	root  string // resolved: what the file's paths must lie in
	opts  Options
	clock *fakeClock
	L     *lua.LState

	// intr is the state's interrupt flag: the watchdog sets it when the
	// file's context ends (timeout, signal, memory), and every
	// instruction and budgeted builtin then raises an error.
	intr    atomic.Int32
	heapCut int64 // heap in use at which the file's state is cut off
	stop    context.CancelCauseFunc

	tests     []testCase
	running   bool // tests are running: test() is no longer allowed
	harnesses []*harness

	mu  sync.Mutex // guards cur: engines may log from other goroutines
	cur *result
}

// output adds a line to the running test's output, up to maxOutput bytes
// per test.
func (fr *fileRun) output(line string) {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	fr.cur.add(line)
}

// add appends a line, or counts it once the test's output is full.
func (r *result) add(line string) {
	if r.size+len(line) > maxOutput {
		r.dropped++
		return
	}
	r.size += len(line)
	r.lines = append(r.lines, line)
}

// failf records a failure of the running test at the Lua caller's line.
func (fr *fileRun) failf(L *lua.LState, format string, args ...any) {
	fr.failAt(callerLine(L), fmt.Sprintf(format, args...))
}

func (fr *fileRun) failAt(where, msg string) {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	fr.cur.failed = true
	if where != "" {
		msg = where + ": " + msg
	}
	if len(msg) > maxFormatLen*4 {
		msg = msg[:maxFormatLen*4] + "...(cut)"
	}
	fr.cur.add(msg)
}

// callerLine returns "file:line" of the innermost Lua function on the
// stack: where the test called the builtin that asks.
func callerLine(L *lua.LState) string {
	for level := 0; ; level++ {
		dbg, ok := L.GetStack(level)
		if !ok {
			return ""
		}
		if _, err := L.GetInfo("Sl", dbg, lua.LNil); err != nil {
			continue
		}
		if dbg.What != "G" && dbg.CurrentLine > 0 {
			return fmt.Sprintf("%s:%d", dbg.Source, dbg.CurrentLine)
		}
	}
}

// runFile runs one test file with its own Lua state, clock and engines.
func runFile(ctx context.Context, path string, opts Options) Summary {
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("test file did not finish within %v", timeout))
	defer cancel()
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	fr := &fileRun{path: path, opts: opts, clock: &fakeClock{}, cur: &result{name: "(top level)"},
		heapCut: opts.memoryLimit() / 2, stop: stop}
	fr.clock.ns.Store(EpochUnix * int64(time.Second))
	defer func() {
		for _, h := range fr.harnesses {
			h.close()
		}
	}()
	out := opts.Out
	if opts.Verbose {
		fmt.Fprintf(out, "=== FILE  %s\n", path)
	}

	var sum Summary
	L := fr.newState()
	defer L.Close()
	L.SetContext(ctx)
	fr.L = L
	watchDone := make(chan struct{})
	defer close(watchDone)
	go fr.watch(ctx, watchDone)
	root, err := fr.resolveRoot()
	fr.root = root
	var fn *lua.LFunction
	if err == nil {
		fn, err = compileFile(L, path)
	}
	if err == nil {
		L.Push(fn)
		err = L.PCall(0, 0, nil)
	}
	if err != nil {
		fr.failAt("", fr.errorMessage(L, err, path+":1"))
	}
	top := fr.cur
	if top.failed {
		fr.report(top)
		sum.Failed++
		return sum
	}
	if opts.Verbose {
		for _, l := range top.lines {
			fmt.Fprintf(out, "    %s\n", l)
		}
	}

	fr.running = true
	for _, tc := range fr.tests {
		if opts.Run != nil && !opts.Run.MatchString(tc.name) {
			continue
		}
		if opts.Verbose {
			fmt.Fprintf(out, "=== RUN   %s: %s\n", path, tc.name)
		}
		r := &result{name: tc.name}
		fr.mu.Lock()
		fr.cur = r
		fr.mu.Unlock()
		L.Push(tc.fn)
		if err := L.PCall(0, 0, nil); err != nil && !isFailMarker(err) {
			fr.failAt("", fr.errorMessage(L, err, fmt.Sprintf("%s:%d", path, tc.fn.Proto.LineDefined)))
		} else if ctx.Err() != nil {
			fr.failAt("", fmt.Sprintf("%s:%d: stopped: %v", path, tc.fn.Proto.LineDefined, context.Cause(ctx)))
		}
		fr.report(r)
		if r.failed {
			sum.Failed++
		} else {
			sum.Passed++
		}
		if ctx.Err() != nil {
			break // the file timed out or the run was interrupted
		}
	}
	return sum
}

// report writes one test's outcome.
func (fr *fileRun) report(r *result) {
	if !r.failed && !fr.opts.Verbose {
		return
	}
	status := "PASS"
	if r.failed {
		status = "FAIL"
	}
	fmt.Fprintf(fr.opts.Out, "--- %s: %s: %s\n", status, fr.path, r.name)
	for _, l := range r.lines {
		for _, part := range strings.Split(l, "\n") {
			fmt.Fprintf(fr.opts.Out, "    %s\n", part)
		}
	}
	if r.dropped > 0 {
		fmt.Fprintf(fr.opts.Out, "    (%d more lines of output left out: over %d bytes)\n", r.dropped, maxOutput)
	}
}

// watch is a test file's watchdog: it interrupts the file's state when its
// context ends (timeout, cancel, a signal) and ends the context, as a
// memory failure, when the Go heap passes fr.heapCut.
func (fr *fileRun) watch(ctx context.Context, done <-chan struct{}) {
	t := time.NewTicker(heapCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-ctx.Done():
			fr.intr.Store(1)
			return
		case <-t.C:
			if h := heapInUse(); h > fr.heapCut {
				fr.stop(fmt.Errorf("memory: the Go heap passed %d MiB, half the %d MiB ceiling", fr.heapCut>>20, fr.opts.memoryLimit()>>20))
				fr.intr.Store(1)
				runtime.GC()
				return
			}
		}
	}
}

// heapInUse is the Go heap's objects, live and not yet freed, in bytes.
func heapInUse() int64 {
	s := [1]metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s[:])
	return int64(s[0].Value.Uint64())
}

// concatCheck refuses a `..` result (of 1 MiB or more) that would take the
// heap past the file's memory line: the copy cannot be interrupted once
// it has begun.
func (fr *fileRun) concatCheck(L *lua.LState, n int) {
	if heapInUse()+int64(n) > fr.heapCut {
		L.RaiseError("memory: a %d-byte string would take the Go heap past %d MiB, half the %d MiB ceiling", n, fr.heapCut>>20, fr.opts.memoryLimit()>>20)
	}
}

// compileFile compiles a test file; syntax errors come back as
// "FILE:LINE: syntax error ...".
func compileFile(L *lua.LState, path string) (*lua.LFunction, error) {
	src, err := engine.ReadLimited(path, MaxFileSize, path+":")
	if err != nil {
		return nil, err
	}
	chunk, err := parse.Parse(bytes.NewReader(src), path)
	if err != nil {
		var perr *parse.Error
		if errors.As(err, &perr) {
			line := perr.Pos.Line
			if line <= 0 {
				line = bytes.Count(src, []byte("\n")) + 1
			}
			msg := fmt.Sprintf("%s:%d: syntax error near %q", path, line, perr.Token)
			if m := strings.TrimSpace(perr.Message); m != "syntax error" {
				msg += ": " + m
			}
			return nil, errors.New(msg)
		}
		return nil, err
	}
	proto, err := lua.Compile(chunk, path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return L.NewFunctionFromProto(proto), nil
}

// whereRE matches a message that already starts with "FILE:LINE:".
var whereRE = regexp.MustCompile(`^[^\s:]+:\d+:`)

// errorMessage is a Lua error as a failure line; messages without a place
// get def ("FILE:LINE") in front, and a message of a test that was cut off
// says why.
func (fr *fileRun) errorMessage(L *lua.LState, err error, def string) string {
	ctx := L.Context()
	var msg string
	var aerr *lua.ApiError
	if errors.As(err, &aerr) {
		if s, ok := aerr.Object.(lua.LString); ok {
			msg = string(s)
		} else {
			msg = "error object: " + formatValue(L, aerr.Object)
		}
	} else {
		msg = err.Error()
	}
	if i := strings.Index(msg, "\nstack traceback:"); i >= 0 {
		msg = msg[:i]
	}
	if ctx.Err() != nil {
		// The VM's own context check and the watchdog's interrupt flag race
		// to stop the state; either way the test was interrupted, and the
		// message says so the same way.
		if raw := ctx.Err().Error(); strings.HasSuffix(msg, raw) {
			msg = strings.TrimSuffix(msg, raw) + "interrupted"
		}
		msg = fmt.Sprintf("%s (%v)", msg, context.Cause(ctx))
	}
	if def != "" && !whereRE.MatchString(msg) {
		msg = def + ": " + msg
	}
	return msg
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"regexp"

	"github.com/luafw/luafw/internal/watchdog"

	"github.com/luafw/luafw/plugintest"
)

func testCommand() *command {
	return &command{
		name:    "test",
		args:    "[flags] [PATH...]",
		summary: "run *_test.lua plugin tests",
		about: `Runs the *_test.lua files under each directory (recursively) or the named files; default
".". Each file runs in the daemon's sandbox, cut off at --timeout, at SIGINT/SIGTERM or when the
Go heap passes half the daemon's default memory ceiling. Exit code 0 when every test passed, 1
when one failed (or none was found, or the run was interrupted).`,
		complete: map[string]string{"": "file"},
		define:   defineTest,
	}
}

func defineTest(fs *flag.FlagSet) runner {
	verbose := fs.Bool("v", false, "verbose: list every test and show its output (log lines, print)")
	runPat := fs.String("run", "", "run only the tests whose name matches this `REGEXP`")
	timeout := fs.Duration("timeout", plugintest.DefaultTimeout, "time limit of each test file")
	budget := fs.Duration("budget", plugintest.DefaultBudget, "time budget of plugins whose test or config sets none")
	root := fs.String("root", "", "directory tree (`DIR`) the paths a test file names (plugins, configurations, allow_dirs) must lie in; default: each test file's own directory")
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		return cmdTest(ctx, args, plugintest.Options{Out: stdout, Verbose: *verbose, Timeout: *timeout, Budget: *budget, Root: *root}, *runPat, stderr)
	}
}

// cmdTest is luafw test after its flags.
func cmdTest(ctx context.Context, paths []string, opts plugintest.Options, runPat string, stderr io.Writer) int {
	if runPat != "" {
		re, err := regexp.Compile(runPat)
		if err != nil {
			return usageError(stderr, "test", "-run: %v", err)
		}
		opts.Run = re
	}
	if len(paths) == 0 {
		paths = []string{"."}
	}
	files, err := plugintest.Find(paths)
	if err != nil {
		fmt.Fprintf(stderr, "luafw test: %v\n", err)
		return exitUsage
	}
	if len(files) == 0 {
		fmt.Fprintf(stderr, "luafw test: no *%s files in %v\n", plugintest.Suffix, paths)
		return exitFailed
	}
	watchdog.SetMemoryCeiling(plugintest.DefaultMemoryLimit)
	sum := plugintest.Run(ctx, files, opts)
	if sum.Failed > 0 || ctx.Err() != nil {
		return exitFailed
	}
	return exitOK
}

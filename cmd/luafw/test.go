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

// cmdTest is `luafw test [-v] [-run REGEXP] [PATH...]`: it runs the
// *_test.lua plugin tests under each path (default "."), each file in the
// daemon's sandbox, cut off at -timeout, at SIGINT/SIGTERM (ctx) or when
// the Go heap passes half the daemon's default memory ceiling. Exit
// status: 0 when every test passed, 1 when one failed (or none was found,
// or the run was interrupted), 2 on a usage error.
func cmdTest(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	verbose := fs.Bool("v", false, "verbose: list every test and show its output (log lines, print)")
	runPat := fs.String("run", "", "run only the tests whose name matches this regular expression")
	timeout := fs.Duration("timeout", plugintest.DefaultTimeout, "time limit of each test file")
	budget := fs.Duration("budget", plugintest.DefaultBudget, "time budget of plugins whose test or config sets none")
	root := fs.String("root", "", "directory tree the paths a test file names (plugins, configurations, allow_dirs) must lie in; default: each test file's own directory")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: luafw test [-v] [-run REGEXP] [-timeout D] [-budget D] [-root DIR] [PATH...]")
		fmt.Fprintln(stderr, "Runs the *_test.lua files under each directory (recursively) or the named files; default \".\".")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	opts := plugintest.Options{Out: stdout, Verbose: *verbose, Timeout: *timeout, Budget: *budget, Root: *root}
	if *runPat != "" {
		re, err := regexp.Compile(*runPat)
		if err != nil {
			fmt.Fprintf(stderr, "luafw test: -run: %v\n", err)
			return 2
		}
		opts.Run = re
	}
	paths := fs.Args()
	if len(paths) == 0 {
		paths = []string{"."}
	}
	files, err := plugintest.Find(paths)
	if err != nil {
		fmt.Fprintf(stderr, "luafw test: %v\n", err)
		return 2
	}
	if len(files) == 0 {
		fmt.Fprintf(stderr, "luafw test: no *%s files in %v\n", plugintest.Suffix, paths)
		return 1
	}
	watchdog.SetMemoryCeiling(plugintest.DefaultMemoryLimit)
	sum := plugintest.Run(ctx, files, opts)
	if sum.Failed > 0 || ctx.Err() != nil {
		return 1
	}
	return 0
}

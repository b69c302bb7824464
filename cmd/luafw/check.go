package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/luafw/luafw/config"
	"github.com/luafw/luafw/daemon"
	"github.com/luafw/luafw/internal/engine"
)

// loadSpecs reads a plugin list from a Lua file (one plugin) or a YAML
// configuration.
func loadSpecs(path string) ([]engine.PluginSpec, *config.File, error) {
	if strings.HasSuffix(path, ".lua") {
		return []engine.PluginSpec{{File: path}}, nil, nil
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, nil, err
	}
	specs, err := cfg.PluginSpecs()
	return specs, cfg, err
}

func cmdCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, "usage: luafw check FILE.lua|CONFIG.yaml") }
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	log, _ := newLogger(stderr, "text", "warn")
	specs, cfg, err := loadSpecs(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "luafw check: %v\n", err)
		return 1
	}
	eng := engine.New(engine.Options{Logger: log, ManualTimers: true}) // check runs no timers
	defer eng.Close()
	if err := eng.LoadContext(ctx, specs); err != nil {
		fmt.Fprintf(stderr, "luafw check: %v\n", err)
		return 1
	}
	if cfg != nil {
		warnCredentials(stderr, cfg, specs)
		// What only the loaded chains tell: how many diversions need queues.
		if err := daemon.CheckQueues(cfg, daemon.Plan(eng.HookPriorities())); err != nil {
			fmt.Fprintf(stderr, "luafw check: %v\n", err)
			return 1
		}
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOOK\tPRIORITY\tPLUGIN\tCALLBACK\tFILE\tMATCH")
	for _, c := range eng.Chains() {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", c.Hook, c.Priority, c.Plugin, c.Name, c.File, c.Match.String())
	}
	tw.Flush()
	printCrossingTags(stdout, cfg, eng.CrossingTags())
	fmt.Fprintf(stdout, "ok: %d plugins, %d callbacks\n", len(eng.Plugins()), len(eng.Chains()))
	return 0
}

// warnCredentials warns (it is no failure) about each credential file of
// the configuration that lies inside a plugin's directory or an allowed
// directory: every plugin that may read there can read it (net.load).
func warnCredentials(stderr io.Writer, cfg *config.File, specs []engine.PluginSpec) {
	for _, c := range cfg.Credentials() {
		real, err := engine.RealPath(c.Path)
		if err != nil {
			// A missing file: judge where it would be.
			if real, err = engine.RealPath(filepath.Dir(c.Path)); err != nil {
				continue
			}
			real = filepath.Join(real, filepath.Base(c.Path))
		}
		for _, s := range specs {
			dirs := []string{}
			for _, d := range append([]string{filepath.Dir(s.File)}, s.AllowDirs...) {
				if r, err := engine.RealPath(d); err == nil {
					dirs = append(dirs, r)
				}
			}
			if engine.Within(real, dirs) {
				name := s.Name
				if name == "" {
					name = strings.TrimSuffix(filepath.Base(s.File), ".lua")
				}
				fmt.Fprintf(stderr, "luafw check: warning: %s:%d: %s %s lies in a directory plugin %s may read files from (its own or allow_dirs): keep credentials outside plugin and allowed directories\n",
					cfg.Path, c.Line, c.Key, c.Path, name)
				break
			}
		}
	}
}

// printCrossingTags says which tags cross diversions on the kernel path,
// on which mark bits, and which get no bit.
func printCrossingTags(stdout io.Writer, cfg *config.File, crossing []string) {
	if len(crossing) == 0 {
		return
	}
	mask := uint32(config.DefaultTagMarks)
	if cfg != nil {
		mask = cfg.TagMarks()
	}
	carried, left := daemon.TagMarks(mask, crossing)
	if len(carried) > 0 {
		fmt.Fprintf(stdout, "tags across diversions (marks.tags %#x): %s\n", mask, strings.Join(carried, " "))
	}
	if len(left) > 0 {
		fmt.Fprintf(stdout, "warning: these tags stay within their diversion (marks.tags %#x has no bit left): %s\n", mask, strings.Join(left, " "))
	}
}

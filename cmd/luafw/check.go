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

func checkCommand() *command {
	return &command{
		name:    "check",
		args:    "[--strict] [--options] FILE.lua|CONFIG.yaml",
		summary: "load a plugin or a configuration's plugins offline and print the chains",
		about: `Loads one plugin file, or the plugins of a configuration file, as luafw run would, without
touching the kernel, and prints the callback chains in the order packets meet them. A mistake
in the configuration or a plugin is reported with its file:line and exit code 1. The static
checks (names the script API lacks, assignments to API tables, globals set inside functions)
report errors and warnings with file:line; --strict makes warnings errors.`,
		complete: map[string]string{"": "file"},
		define: func(fs *flag.FlagSet) runner {
			strict := fs.Bool("strict", false, "make warnings of the static checks errors")
			options := fs.Bool("options", false, "print each plugin's options (declared with fw.schema) instead of the chains")
			return func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
				if code := wantArgs(stderr, "check", args, "FILE.lua or CONFIG.yaml"); code != exitOK {
					return code
				}
				return cmdCheck(ctx, args[0], *strict, *options, stdout, stderr)
			}
		},
	}
}

// cmdCheck is luafw check after its flags.
func cmdCheck(ctx context.Context, path string, strict, options bool, stdout, stderr io.Writer) int {
	log, _ := newLogger(stderr, "text", "warn")
	specs, cfg, err := loadSpecs(path)
	if err != nil {
		fmt.Fprintf(stderr, "luafw check: %v\n", err)
		return 1
	}
	if !lintPlugins(specs, strict, stderr) {
		return 1
	}
	// The load runs the checks again; lintPlugins printed their findings.
	eng := engine.New(engine.Options{Logger: log, StrictChecks: strict, Warn: func(engine.Finding) {}, ManualTimers: true}) // check runs no timers
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
	if options {
		printOptions(stdout, eng)
		return 0
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

// printOptions prints the options each loaded plugin declares.
func printOptions(stdout io.Writer, eng *engine.Engine) {
	for i, p := range eng.Plugins() {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		opts, ok := eng.PluginOptions(p.Name)
		if !ok {
			fmt.Fprintf(stdout, "%s: declares no options (no fw.schema)\n", p.Name)
			continue
		}
		fmt.Fprintf(stdout, "%s (%s):\n", p.Name, p.File)
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "OPTION\tTYPE\tDEFAULT\tDESCRIPTION")
		for _, o := range opts {
			typ := o.Type
			if len(o.Values) > 0 {
				typ += ": " + strings.Join(o.Values, "|")
			}
			if r := o.Range(); r != "" {
				typ += " " + r
			}
			dflt := o.Default
			if dflt == "" {
				dflt = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", o.Name, typ, dflt, o.Doc)
		}
		tw.Flush()
	}
}

// lintPlugins prints every finding of the static checks of each plugin,
// warnings included, and reports whether none fails the check.
func lintPlugins(specs []engine.PluginSpec, strict bool, stderr io.Writer) bool {
	ok := true
	for _, spec := range specs {
		findings, err := engine.Lint(spec)
		if err != nil {
			continue // the load says it, once
		}
		for _, f := range findings {
			kind := "warning: "
			if f.Error {
				kind = ""
			}
			if f.Error || strict {
				ok = false
			}
			fmt.Fprintf(stderr, "luafw check: %s%s\n", kind, f)
		}
	}
	return ok
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

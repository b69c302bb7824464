package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// A command is one luafw subcommand. The table of them (commandTable) is
// the one source of `luafw --help`, each command's --help, the man page
// luafw(8) and the shell completions: a flag exists in all of them because
// define declared it, and nowhere else.
type command struct {
	name    string
	args    string // synopsis after "luafw NAME", e.g. "[flags] FILE.lua|CONFIG.yaml"
	summary string // one line, for the command list
	about   string // paragraphs for --help and the man page
	subs    []subcommand
	// complete says what completes a flag's value (by flag name) or a
	// positional argument ("" key): "file", "dir", or the values
	// separated by spaces. A flag that takes a value and is missing here
	// completes files when its placeholder is FILE or PATH, else nothing.
	complete map[string]string
	// define declares the command's flags on fs and returns the function
	// that runs it on the positional arguments left after them.
	define func(fs *flag.FlagSet) runner
}

// A subcommand is one word of a command that takes one first (state list).
type subcommand struct{ name, args, summary string }

// runner runs a command on its positional arguments and returns the exit
// code (exitCodes).
type runner func(ctx context.Context, args []string, stdout, stderr io.Writer) int

// commandTable lists luafw's commands in the order help shows them.
func commandTable() []*command {
	return []*command{
		runCommand(), reloadCommand(), statusCommand(), stateCommand(), traceCommand(), topCommand(),
		checkCommand(), replayCommand(), testCommand(),
		versionCommand(), completionCommand(), manCommand(),
	}
}

func findCommand(name string) *command {
	for _, c := range commandTable() {
		if c.name == name {
			return c
		}
	}
	return nil
}

const tagline = "a Lua-scriptable firewall on NFQUEUE"

// run is luafw's entry: it dispatches args to a command and returns the
// exit code. Help goes to stdout (exit 0); a usage mistake is named on
// stderr (exit 2).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "luafw: no command given\n\n")
		writeUsage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help":
		writeUsage(stdout)
		return exitOK
	case "help":
		if len(args) == 1 {
			writeUsage(stdout)
			return exitOK
		}
		c := findCommand(args[1])
		if c == nil {
			return unknownCommand(args[1], stderr)
		}
		writeHelp(stdout, c)
		return exitOK
	case "-version", "--version":
		args[0] = "version"
	}
	c := findCommand(args[0])
	if c == nil {
		return unknownCommand(args[0], stderr)
	}
	return c.invoke(ctx, args[1:], stdout, stderr)
}

// invoke parses the command's flags (before, between and after its
// positional arguments; everything after "--" is positional) and runs it.
func (c *command) invoke(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := c.flagSet()
	r := c.define(fs)
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		writeHelp(stdout, c)
		return exitOK
	}
	if err != nil {
		return usageError(stderr, c.name, "%v", err)
	}
	return r(ctx, pos, stdout, stderr)
}

// flagSet is an empty flag set for c that reports nothing itself: invoke
// and writeHelp do.
func (c *command) flagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("luafw "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// flags lists c's flags, sorted by name.
func (c *command) flags() []*flag.Flag {
	fs := c.flagSet()
	c.define(fs)
	var out []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { out = append(out, f) })
	return out
}

// unknownCommand reports a first word that is no command: a file is taken
// for the configuration the user meant to give.
func unknownCommand(word string, stderr io.Writer) int {
	switch {
	case strings.HasSuffix(word, ".yaml") || strings.HasSuffix(word, ".yml"):
		fmt.Fprintf(stderr, "luafw: unexpected argument %q (did you mean luafw run --config %s, or luafw check %s?)\n", word, word, word)
	case strings.HasSuffix(word, ".lua"):
		fmt.Fprintf(stderr, "luafw: unexpected argument %q (did you mean luafw check %s?)\n", word, word)
	case strings.HasPrefix(word, "-"):
		fmt.Fprintf(stderr, "luafw: unknown flag %q before the command (flags follow it: luafw COMMAND %s)\n", word, word)
	default:
		fmt.Fprintf(stderr, "luafw: unknown command %q\n", word)
	}
	fmt.Fprintln(stderr, "Run 'luafw --help' for the commands.")
	return exitUsage
}

// usageError reports a usage mistake of command cmd on stderr and returns
// exitUsage.
func usageError(stderr io.Writer, cmd, format string, a ...any) int {
	fmt.Fprintf(stderr, "luafw %s: %s\nRun 'luafw %s --help' for usage.\n", cmd, fmt.Sprintf(format, a...), cmd)
	return exitUsage
}

// wantArgs checks the number of positional arguments: names are the ones
// expected, in order. It reports a missing or extra one and returns
// exitUsage, or exitOK.
func wantArgs(stderr io.Writer, cmd string, args []string, names ...string) int {
	switch {
	case len(args) < len(names):
		return usageError(stderr, cmd, "missing %s", names[len(args)])
	case len(args) > len(names):
		return usageError(stderr, cmd, "unexpected argument %q", args[len(names)])
	}
	return exitOK
}

// writeUsage writes luafw's command list.
func writeUsage(w io.Writer) {
	fmt.Fprintf(w, "luafw — %s\n\nUsage:\n  luafw COMMAND [flags] [arguments]\n\nCommands:\n", tagline)
	width := 0
	for _, c := range commandTable() {
		width = max(width, len(c.name))
	}
	for _, c := range commandTable() {
		fmt.Fprintf(w, "  %-*s  %s\n", width, c.name, c.summary)
	}
	fmt.Fprint(w, "\nRun 'luafw COMMAND --help' (or luafw help COMMAND) for a command's flags.\n"+
		"Exit codes: "+exitSummary()+".\n")
}

// writeHelp writes a command's help.
func writeHelp(w io.Writer, c *command) {
	fmt.Fprintf(w, "Usage: luafw %s %s\n\n", c.name, c.args)
	fmt.Fprintf(w, "%s\n", wrap(c.about, 78, ""))
	if len(c.subs) > 0 {
		fmt.Fprintln(w, "\nSubcommands:")
		width := 0
		for _, s := range c.subs {
			width = max(width, len(s.name)+1+len(s.args))
		}
		for _, s := range c.subs {
			fmt.Fprintf(w, "  %-*s  %s\n", width, strings.TrimSpace(s.name+" "+s.args), s.summary)
		}
	}
	flags := c.flags()
	if len(flags) == 0 {
		return
	}
	fmt.Fprintln(w, "\nFlags:")
	for _, f := range flags {
		fmt.Fprintf(w, "  %s\n", flagSynopsis(f))
		fmt.Fprintf(w, "%s\n", wrap(flagText(f), 72, "      "))
	}
}

// flagName is a flag as help shows it: -n for one letter, else --name.
func flagName(f *flag.Flag) string {
	if len(f.Name) == 1 {
		return "-" + f.Name
	}
	return "--" + f.Name
}

// flagSynopsis is "--config FILE", "--json".
func flagSynopsis(f *flag.Flag) string {
	if ph := placeholder(f); ph != "" {
		return flagName(f) + " " + ph
	}
	return flagName(f)
}

// placeholder is the name of a flag's value ("" for a boolean flag): the
// word its usage puts in `backquotes`, else one from its type.
func placeholder(f *flag.Flag) string {
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return ""
	}
	name, _ := flag.UnquoteUsage(f)
	switch name {
	case "", "value", "string":
		return "VALUE"
	case "duration":
		return "DURATION"
	case "int", "uint":
		return "N"
	}
	return name
}

// flagText is a flag's usage with its default.
func flagText(f *flag.Flag) string {
	_, usage := flag.UnquoteUsage(f)
	switch f.DefValue {
	case "", "0", "0s", "false":
	default:
		if !strings.Contains(usage, "default") {
			usage += " (default " + f.DefValue + ")"
		}
	}
	return usage
}

// wrap fills text to width columns, each line indented; blank lines
// separate paragraphs and lines starting with a space are kept as they are
// (examples).
func wrap(text string, width int, indent string) string {
	var out []string
	for _, para := range strings.Split(strings.TrimSpace(text), "\n\n") {
		if strings.HasPrefix(para, " ") {
			for _, l := range strings.Split(para, "\n") {
				out = append(out, indent+l)
			}
			out = append(out, "")
			continue
		}
		line := indent
		for _, word := range strings.Fields(para) {
			if len(line) > len(indent) && len(line)+1+len(word) > width {
				out = append(out, line)
				line = indent
			}
			if len(line) > len(indent) {
				line += " "
			}
			line += word
		}
		out = append(out, line, "")
	}
	return strings.TrimRight(strings.Join(out, "\n"), "\n")
}

// parseInterspersed parses flags that may come before, between or after
// the positional arguments, and returns the positional ones. After "--"
// everything is positional (a VALUE of -5).
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if len(args) > 0 && args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		rest := fs.Args()
		if len(args) > 0 && len(rest) < len(args) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil // fs.Parse took the "--"
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// subNames are the names of subs, in order.
func subNames(subs []subcommand) []string {
	var names []string
	for _, s := range subs {
		names = append(names, s.name)
	}
	return names
}

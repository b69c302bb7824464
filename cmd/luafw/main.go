// Command luafw is the Lua-scriptable firewall: it runs Lua plugins on
// packets that netfilter diverts through NFQUEUE (luafw run), and tries them
// offline (luafw check, luafw replay, luafw test).
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

const usage = `luafw — a Lua-scriptable firewall on NFQUEUE

Usage:
  luafw run --config CONFIG.yaml [--dry-run] [--metrics ADDR]   serve the queues (root)
  luafw reload [--socket PATH]                                  reload the daemon's config; reports the result
  luafw status [--json] [--socket PATH]                         the daemon's plugins, counters, queues
  luafw state list|show|get|set|delete|flush ...               see and edit the daemon's state maps (lift a ban)
  luafw trace [--proto P --src A --dst A --port N --hook H --plugin P --verdict V] [-n N] [--for D] [--json] [LUA-EXPR]
                                                                show each matching packet's callbacks, verdicts, changes
  luafw top                                                     live view of plugins, callbacks and queues
  luafw version                                                 print the build's version
  luafw check FILE.lua|CONFIG.yaml                              load plugins, print the chains
  luafw replay --config CONFIG.yaml --pcap FILE [--path forward|in|out] [--hooks h1,h2]
  luafw test [PATH...]                                          run *_test.lua plugin tests

Run "luafw COMMAND -h" for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// commands maps each subcommand to its implementation; each returns the
// process exit code.
func commands() map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) int{
		"check":   cmdCheck,
		"replay":  cmdReplay,
		"run":     cmdRun,
		"reload":  cmdReload,
		"state":   cmdState,
		"status":  cmdStatus,
		"test":    cmdTest,
		"top":     cmdTop,
		"trace":   cmdTrace,
		"version": cmdVersion,
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "--version" || args[0] == "-version" {
		args[0] = "version"
	}
	cmd, ok := commands()[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "luafw: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	return cmd(ctx, args[1:], stdout, stderr)
}

// newLogger returns a slog logger writing text or JSON at a level.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if level == "" {
		level = "info"
	}
	if err := lv.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, fmt.Errorf("bad log level %q (want debug, info, warn, error)", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("bad log format %q (want text or json)", format)
}

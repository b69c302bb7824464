package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/luafw/luafw/internal/watchdog"

	"github.com/luafw/luafw/internal/engine"
	"github.com/luafw/luafw/pcap"
	"github.com/luafw/luafw/replay"
)

func replayCommand() *command {
	return &command{
		name:    "replay",
		args:    "--config FILE --pcap FILE [flags]",
		summary: "run a capture file through the plugins offline and print each packet's verdict",
		about: `Runs the packets of a pcap or pcapng file through the plugins of a configuration (or one
plugin file), as the kernel path would meet them, and prints each packet's verdict; scripts see
the capture's time. Nothing touches the kernel.`,
		complete: map[string]string{"path": "forward in out", "hooks": "prerouting input forward output postrouting",
			"log-level": "debug info warn error"},
		define: defineReplay,
	}
}

func defineReplay(fs *flag.FlagSet) runner {
	cfgPath := fs.String("config", "", "configuration `FILE` (YAML) or a single plugin (.lua)")
	pcapPath := fs.String("pcap", "", "capture `FILE` (pcap or pcapng; Ethernet, raw IP, Linux cooked)")
	pathName := fs.String("path", "forward", "kernel `PATH`: forward (prerouting, forward, postrouting), in (prerouting, input), out (output, postrouting)")
	hooksFlag := fs.String("hooks", "", "only these `HOOKS` of the path, comma-separated")
	logLevel := fs.String("log-level", "info", "log `LEVEL` of the scripts' log lines (stderr)")
	writePcap := fs.String("write-pcap", "", "write the packets as they leave (rewritten, injected; dropped ones left out) to this pcap `FILE` (raw IP)")
	budget := fs.Duration("budget", 0, "time budget per callback for every plugin, instead of the configuration's (e.g. 1s for results that do not depend on how busy the machine is)")
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		if len(args) > 0 {
			return usageError(stderr, "replay", "unexpected argument %q (the configuration and the capture are --config FILE and --pcap FILE)", args[0])
		}
		switch {
		case *cfgPath == "":
			return usageError(stderr, "replay", "missing --config FILE")
		case *pcapPath == "":
			return usageError(stderr, "replay", "missing --pcap FILE")
		}
		return replayRun(ctx, *cfgPath, *pcapPath, *pathName, *hooksFlag, *logLevel, *writePcap, *budget, stdout, stderr)
	}
}

// replayRun is luafw replay after its flags.
func replayRun(ctx context.Context, cfgPath, pcapPath, pathName, hooksFlag, logLevel, writePcap string, budget time.Duration, stdout, stderr io.Writer) int {
	path, err := replay.ParsePath(pathName)
	if err != nil {
		return usageError(stderr, "replay", "--path: %v", err)
	}
	hooks, err := parseHooks(hooksFlag)
	if err != nil {
		return usageError(stderr, "replay", "--hooks: %v", err)
	}
	log, err := newLogger(stderr, "text", logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "luafw replay: %v\n", err)
		return exitUsage
	}
	specs, cfg, err := loadSpecs(cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "luafw replay: %v\n", err)
		return exitFailed
	}
	if budget > 0 {
		for i := range specs {
			specs[i].Budget = budget
		}
	}
	// Scripts see the capture's time: rate limits and TTLs behave as they
	// would have when it was taken.
	clk := &replay.Clock{}
	watchdog.SetMemoryCeiling(cfg.MemoryCeiling())
	opts := cfg.EngineOptions()
	opts.Logger, opts.Clock = log, clk.Now
	opts.ManualTimers = true // run on the capture's time by replay.Run
	eng := engine.New(opts)
	defer eng.Close()
	if err := eng.LoadContext(ctx, specs); err != nil {
		fmt.Fprintf(stderr, "luafw replay: %v\n", err)
		return exitFailed
	}
	f, err := os.Open(pcapPath)
	if err != nil {
		fmt.Fprintf(stderr, "luafw replay: %v\n", err)
		return exitFailed
	}
	defer f.Close()
	ropts := replay.Options{Path: path, Hooks: hooks, Clock: clk}
	if writePcap != "" {
		w, done, err := createPcap(writePcap)
		if err != nil {
			fmt.Fprintf(stderr, "luafw replay: %v\n", err)
			return exitFailed
		}
		defer func() {
			if err := done(); err != nil {
				fmt.Fprintf(stderr, "luafw replay: %v\n", err)
			}
		}()
		ropts.Out = w
	}
	sum, err := replay.Run(ctx, eng, f, ropts, stdout)
	fmt.Fprintln(stderr, sum)
	if err != nil {
		fmt.Fprintf(stderr, "luafw replay: %s: %v\n", pcapPath, err)
		return exitFailed
	}
	return exitOK
}

// createPcap creates a raw-IP pcap file at path; done flushes and closes it.
func createPcap(path string) (w *pcap.Writer, done func() error, err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, nil, err
	}
	bw := bufio.NewWriter(f)
	if w, err = pcap.NewWriter(bw, pcap.LinkTypeRaw); err != nil {
		f.Close()
		return nil, nil, err
	}
	return w, func() error {
		if err := bw.Flush(); err != nil {
			f.Close()
			return fmt.Errorf("%s: %w", path, err)
		}
		return f.Close()
	}, nil
}

// parseHooks reads a comma-separated list of hook names ("" is none).
func parseHooks(list string) ([]engine.Hook, error) {
	var hooks []engine.Hook
	if list == "" {
		return nil, nil
	}
	for _, name := range strings.Split(list, ",") {
		h, err := engine.ParseHook(strings.TrimSpace(name))
		if err != nil {
			return nil, err
		}
		hooks = append(hooks, h)
	}
	return hooks, nil
}

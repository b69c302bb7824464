package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/luafw/luafw/internal/watchdog"

	"github.com/luafw/luafw/internal/engine"
	"github.com/luafw/luafw/pcap"
	"github.com/luafw/luafw/replay"
)

func cmdReplay(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML) or a single plugin (.lua)")
	pcapPath := fs.String("pcap", "", "capture file (pcap or pcapng; Ethernet, raw IP, Linux cooked)")
	pathName := fs.String("path", "forward", "kernel path: forward (prerouting, forward, postrouting), in (prerouting, input), out (output, postrouting)")
	hooksFlag := fs.String("hooks", "", "only these hooks of the path, comma-separated")
	logLevel := fs.String("log-level", "info", "log level of the scripts' log lines (stderr)")
	writePcap := fs.String("write-pcap", "", "write the packets as they leave (rewritten, injected; dropped ones left out) to this pcap file (raw IP)")
	budget := fs.Duration("budget", 0, "time budget per callback for every plugin, instead of the configuration's (e.g. 1s for results that do not depend on how busy the machine is)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cfgPath == "" || *pcapPath == "" {
		fmt.Fprintln(stderr, "usage: luafw replay --config CONFIG.yaml --pcap FILE [--path forward|in|out] [--hooks h1,h2]")
		return 2
	}
	path, err := replay.ParsePath(*pathName)
	if err != nil {
		fmt.Fprintf(stderr, "luafw replay: %v\n", err)
		return 2
	}
	hooks, err := parseHooks(*hooksFlag)
	if err != nil {
		fmt.Fprintf(stderr, "luafw replay: --hooks: %v\n", err)
		return 2
	}
	log, err := newLogger(stderr, "text", *logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "luafw replay: %v\n", err)
		return 2
	}
	specs, cfg, err := loadSpecs(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "luafw replay: %v\n", err)
		return 1
	}
	if *budget > 0 {
		for i := range specs {
			specs[i].Budget = *budget
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
		return 1
	}
	f, err := os.Open(*pcapPath)
	if err != nil {
		fmt.Fprintf(stderr, "luafw replay: %v\n", err)
		return 1
	}
	defer f.Close()
	ropts := replay.Options{Path: path, Hooks: hooks, Clock: clk}
	if *writePcap != "" {
		w, done, err := createPcap(*writePcap)
		if err != nil {
			fmt.Fprintf(stderr, "luafw replay: %v\n", err)
			return 1
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
		fmt.Fprintf(stderr, "luafw replay: %s: %v\n", *pcapPath, err)
		return 1
	}
	return 0
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

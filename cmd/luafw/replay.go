package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/luafw/luafw/host"
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
	var hooks []host.Hook
	if *hooksFlag != "" {
		for _, name := range strings.Split(*hooksFlag, ",") {
			h, err := host.ParseHook(strings.TrimSpace(name))
			if err != nil {
				fmt.Fprintf(stderr, "luafw replay: --hooks: %v\n", err)
				return 2
			}
			hooks = append(hooks, h)
		}
	}
	log, err := newLogger(stderr, "text", *logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "luafw replay: %v\n", err)
		return 2
	}
	specs, _, err := loadSpecs(*cfgPath)
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
	eng := host.New(host.Options{Logger: log, Clock: clk.Now})
	defer eng.Close()
	if err := eng.Load(specs); err != nil {
		fmt.Fprintf(stderr, "luafw replay: %v\n", err)
		return 1
	}
	f, err := os.Open(*pcapPath)
	if err != nil {
		fmt.Fprintf(stderr, "luafw replay: %v\n", err)
		return 1
	}
	defer f.Close()
	opts := replay.Options{Path: path, Hooks: hooks, Clock: clk}
	if *writePcap != "" {
		out, err := os.Create(*writePcap)
		if err != nil {
			fmt.Fprintf(stderr, "luafw replay: %v\n", err)
			return 1
		}
		defer out.Close()
		bw := bufio.NewWriter(out)
		defer func() {
			if err := bw.Flush(); err != nil {
				fmt.Fprintf(stderr, "luafw replay: %s: %v\n", *writePcap, err)
			}
		}()
		if opts.Out, err = pcap.NewWriter(bw, pcap.LinkTypeRaw); err != nil {
			fmt.Fprintf(stderr, "luafw replay: %v\n", err)
			return 1
		}
	}
	sum, err := replay.Run(ctx, eng, f, opts, stdout)
	fmt.Fprintln(stderr, sum)
	if err != nil {
		fmt.Fprintf(stderr, "luafw replay: %s: %v\n", *pcapPath, err)
		return 1
	}
	return 0
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/luafw/luafw/config"
	"github.com/luafw/luafw/daemon"
)

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	dryRun := fs.Bool("dry-run", false, "print the rules luafw would install and exit")
	metrics := fs.String("metrics", "", "serve Prometheus metrics on this address (e.g. 127.0.0.1:9153); default: the config's metrics, else off")
	logFormat := fs.String("log-format", "", "text or json (default: the config's log.format, else text)")
	logLevel := fs.String("log-level", "", "debug, info, warn, error (default: the config's log.level, else info)")
	paths, err := daemon.CurrentPaths(daemon.DefaultRunDir)
	if err != nil {
		fmt.Fprintf(stderr, "luafw run: %v\n", err)
		return 1
	}
	pidfile := fs.String("pidfile", paths.Pid, "write the daemon's pid here (for signals); empty for none")
	socket := fs.String("socket", paths.Socket, "answer `luafw reload` and `luafw status` on this Unix socket; empty for none")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cfgPath == "" {
		fmt.Fprintln(stderr, "usage: luafw run --config CONFIG.yaml [--dry-run] [--metrics ADDR]")
		return 2
	}
	if !*dryRun {
		inst, code := acquireInstance(stderr)
		if inst == nil {
			return code
		}
		defer inst.Release()
	}
	// The log settings come from the flags, else the config file.
	if cfg, err := config.Load(*cfgPath); err == nil {
		if *logFormat == "" {
			*logFormat = cfg.Log.Format
		}
		if *logLevel == "" {
			*logLevel = cfg.Log.Level
		}
		if *metrics == "" {
			*metrics = cfg.Metrics
		}
	}
	log, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "luafw run: %v\n", err)
		return 2
	}
	d, err := daemon.New(daemon.Options{ConfigPath: *cfgPath, Logger: log, ControlSocket: *socket, Pidfile: *pidfile,
		Notifier: daemon.SystemdNotifier(), Version: buildVersion()})
	if err != nil {
		fmt.Fprintf(stderr, "luafw run: %v\n", err)
		return 1
	}
	if *dryRun {
		fmt.Fprint(stdout, d.DryRun())
		d.Engine().Close()
		return 0
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintf(stderr, "luafw run: %v\n", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "luafw run: cpu profile: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: reloading")
				d.ReloadAndReport() // logs the outcome
			}
		}
	}()
	if *metrics != "" {
		go func() {
			if err := d.ServeMetrics(ctx, *metrics); err != nil {
				log.Error("metrics server stopped", "err", err)
			}
		}()
	}
	if err := d.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "luafw run: %v\n", err)
		return 1
	}
	log.Info("luafw stopped")
	return 0
}

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

func runCommand() *command {
	return &command{
		name:    "run",
		args:    "--config FILE [flags]",
		summary: "serve the queues: load the plugins, install the rules, judge packets (root)",
		about: `Loads the plugins of the configuration, installs the nftables rules that divert packets to
NFQUEUE and runs each packet through the plugins' callbacks until SIGTERM or SIGINT, then removes
its rules. SIGHUP reloads the configuration (as luafw reload does). One daemon runs per network
namespace; its control socket, pidfile and lock are under /run/luafw, named by the namespace's
inode. Needs root, or CAP_NET_ADMIN with write access to /run/luafw.`,
		complete: map[string]string{"log-format": "text json", "log-level": "debug info warn error"},
		define:   defineRun,
	}
}

func defineRun(fs *flag.FlagSet) runner {
	cfgPath := fs.String("config", "", "configuration `FILE` (YAML)")
	dryRun := fs.Bool("dry-run", false, "print the rules luafw would install and exit")
	metrics := fs.String("metrics", "", "serve Prometheus metrics on this `ADDR` (e.g. 127.0.0.1:9153); default: the config's metrics, else off")
	logFormat := fs.String("log-format", "", "log `FORMAT`: text or json (default: the config's log.format, else text)")
	logLevel := fs.String("log-level", "", "log `LEVEL`: debug, info, warn, error (default: the config's log.level, else info)")
	pidfile := fs.String("pidfile", "", "write the daemon's pid to this `FILE` (for signals); empty for none (default: "+daemon.DefaultRunDir+"/netns-INODE.pid)")
	socket := fs.String("socket", "", "answer luafw reload, status, state, trace and top on this Unix socket `PATH`; empty for none (default: "+daemon.DefaultRunDir+"/netns-INODE.sock)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this `FILE` (go tool pprof)")
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		if len(args) > 0 {
			if *cfgPath == "" {
				return usageError(stderr, "run", "unexpected argument %q (did you mean --config %s?)", args[0], args[0])
			}
			return usageError(stderr, "run", "unexpected argument %q", args[0])
		}
		if *cfgPath == "" {
			return usageError(stderr, "run", "missing --config FILE")
		}
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		paths, err := daemon.CurrentPaths(daemon.DefaultRunDir)
		if err != nil {
			fmt.Fprintf(stderr, "luafw run: %v\n", err)
			return exitFailed
		}
		if !set["pidfile"] {
			*pidfile = paths.Pid
		}
		if !set["socket"] {
			*socket = paths.Socket
		}
		return serve(ctx, runFlags{cfgPath: *cfgPath, dryRun: *dryRun, metrics: *metrics, logFormat: *logFormat,
			logLevel: *logLevel, pidfile: *pidfile, socket: *socket, cpuprofile: *cpuprofile}, stdout, stderr)
	}
}

// runFlags are luafw run's flags, after defaults.
type runFlags struct {
	cfgPath, metrics, logFormat, logLevel, pidfile, socket, cpuprofile string
	dryRun                                                             bool
}

// serve is luafw run after its flags.
func serve(ctx context.Context, f runFlags, stdout, stderr io.Writer) int {
	if !f.dryRun {
		inst, code := acquireInstance(stderr)
		if inst == nil {
			return code
		}
		defer inst.Release()
	}
	// The log settings come from the flags, else the config file.
	if cfg, err := config.Load(f.cfgPath); err == nil {
		if f.logFormat == "" {
			f.logFormat = cfg.Log.Format
		}
		if f.logLevel == "" {
			f.logLevel = cfg.Log.Level
		}
		if f.metrics == "" {
			f.metrics = cfg.Metrics
		}
	}
	log, err := newLogger(stderr, f.logFormat, f.logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "luafw run: %v\n", err)
		return exitUsage
	}
	d, err := daemon.New(daemon.Options{ConfigPath: f.cfgPath, Logger: log, ControlSocket: f.socket, Pidfile: f.pidfile,
		Notifier: daemon.SystemdNotifier(), Version: buildVersion()})
	if err != nil {
		fmt.Fprintf(stderr, "luafw run: %v\n", err)
		return exitFailed
	}
	if f.dryRun {
		fmt.Fprint(stdout, d.DryRun())
		d.Engine().Close()
		return exitOK
	}
	if f.cpuprofile != "" {
		pf, err := os.Create(f.cpuprofile)
		if err != nil {
			fmt.Fprintf(stderr, "luafw run: %v\n", err)
			return exitFailed
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			fmt.Fprintf(stderr, "luafw run: cpu profile: %v\n", err)
			return exitFailed
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
	if f.metrics != "" {
		// Listening before the start: an address luafw cannot listen on
		// stops it, rather than leaving it running unwatched.
		ln, err := daemon.ListenMetrics(f.metrics)
		if err != nil {
			fmt.Fprintf(stderr, "luafw run: %v\n", err)
			return exitFailed
		}
		go func() {
			if err := d.ServeMetrics(ctx, ln); err != nil {
				log.Error("metrics server stopped", "err", err)
			}
		}()
	}
	if err := d.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "luafw run: %v\n", err)
		return exitFailed
	}
	log.Info("luafw stopped")
	return exitOK
}

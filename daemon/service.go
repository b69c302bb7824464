package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/luafw/luafw/daemon/control"
)

// service is the daemon's face to operators and the service manager: the
// control socket, sd_notify states, the watchdog, and the queue readers'
// heartbeats.
type service struct {
	notifier Notifier
	socket   string // control socket path; empty for none
	pidfile  string // empty for none
	version  string
	started  time.Time
	readers  readers

	reloadMu  sync.Mutex // one reload at a time, so RELOADING/READY pairs do not interleave
	stopping  bool       // guarded by reloadMu: no reload once shutdown began
	lastError atomic.Pointer[string]
	// phase is phaseStarting until READY=1, phaseReady until shutdown
	// begins, then phaseStopping (/healthz).
	phase atomic.Int32
	// stuck describes a stuck queue reader while the watchdog withholds
	// its ping; nil otherwise.
	stuck atomic.Pointer[string]
}

// The daemon's phases, for /healthz.
const (
	phaseStarting int32 = iota
	phaseReady
	phaseStopping
)

// errStopping refuses a reload that comes in during shutdown, which would
// put back the rules shutdown removes.
var errStopping = errors.New("luafw is stopping; not reloading")

func (s *service) init(opts Options) {
	s.notifier, s.socket, s.pidfile, s.version = opts.Notifier, opts.ControlSocket, opts.Pidfile, opts.Version
}

// ReloadResult is what a successful reload reports.
type ReloadResult struct {
	Generation uint64 `json:"generation"`
	Plugins    int    `json:"plugins"`
	Callbacks  int    `json:"callbacks"`
	Segments   int    `json:"segments"`
}

// ReloadAndReport reloads as a service does: it tells the service manager
// (RELOADING=1, then READY=1 with a STATUS= line, whatever the outcome:
// the daemon keeps serving either way) and returns what now runs, or the
// reload's error (naming file:line for a script error). SIGHUP and the
// control socket's reload both come here.
func (d *Daemon) ReloadAndReport() (ReloadResult, error) {
	d.svc.reloadMu.Lock()
	defer d.svc.reloadMu.Unlock()
	if d.svc.stopping {
		return ReloadResult{Generation: d.eng.Generation()}, errStopping
	}
	d.notify(reloadingState())
	err := d.Reload()
	res := ReloadResult{Generation: d.eng.Generation(), Plugins: len(d.eng.Plugins()), Callbacks: len(d.eng.Chains())}
	d.mu.Lock()
	res.Segments = len(d.plan)
	d.mu.Unlock()
	if err != nil {
		msg := err.Error()
		d.svc.lastError.Store(&msg)
		d.notify(fmt.Sprintf("READY=1\nSTATUS=reload failed, running generation %d: %s", res.Generation, firstLine(msg)))
		return res, err
	}
	d.svc.lastError.Store(nil)
	d.notify("READY=1\nSTATUS=" + d.statusLine())
	return res, nil
}

// statusLine is the one-line STATUS= summary.
func (d *Daemon) statusLine() string {
	d.mu.Lock()
	segs := len(d.plan)
	d.mu.Unlock()
	return fmt.Sprintf("generation %d: %d plugins, %d segments", d.eng.Generation(), len(d.eng.Plugins()), segs)
}

func firstLine(s string) string {
	for i := range len(s) {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}

// claim makes this daemon the namespace's instance: it creates the control
// socket, then the pidfile, before Run touches any kernel state. A daemon
// already answering on the socket makes this one refuse to start before it
// overwrites that daemon's pidfile. release removes both. srv is nil when
// the daemon has no socket.
func (d *Daemon) claim() (srv *control.Server, release func(), err error) {
	if d.svc.socket != "" {
		if srv, err = control.Listen(d.svc.socket, d.log); err != nil {
			return nil, nil, err
		}
		d.registerCommands(srv)
	}
	release = func() {
		if srv != nil {
			srv.Close()
		}
	}
	if p := d.svc.pidfile; p != "" {
		if err := writePidfile(p); err != nil {
			release()
			return nil, nil, err
		}
		release = func() {
			os.Remove(p)
			if srv != nil {
				srv.Close()
			}
		}
	}
	return srv, release, nil
}

func writePidfile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("pidfile: %w", err)
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("pidfile: %w", err)
	}
	return nil
}

// serviceReady runs once the queues are bound and the rules installed:
// the control socket starts answering, the service manager hears READY=1,
// and the watchdog starts if it wants one.
func (d *Daemon) serviceReady(ctx context.Context, srv *control.Server) {
	d.svc.started = time.Now()
	if srv != nil {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			if err := srv.Serve(ctx); err != nil && !errors.Is(err, context.Canceled) {
				d.log.Error("control socket stopped", "err", err)
			}
		}()
		d.log.Info("control socket listening", "path", srv.Path())
	}
	d.notify(fmt.Sprintf("READY=1\nMAINPID=%d\nSTATUS=%s", os.Getpid(), d.statusLine()))
	d.svc.phase.Store(phaseReady)
	if d.svc.notifier != nil {
		if iv := d.svc.notifier.WatchdogInterval(); iv > 0 {
			d.log.Info("watchdog on", "interval", iv)
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				d.watchdog(ctx, iv)
			}()
		}
	}
}

// serviceStopping tells the service manager the daemon is stopping, and
// waits for a reload in progress, refusing later ones.
func (d *Daemon) serviceStopping() {
	d.svc.phase.Store(phaseStopping)
	d.notify("STOPPING=1\nSTATUS=stopping: removing rules, draining queues")
	d.svc.reloadMu.Lock()
	d.svc.stopping = true
	d.svc.reloadMu.Unlock()
}

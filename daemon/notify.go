package daemon

import (
	"fmt"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// Notifier tells a service manager how the daemon is doing. The states are
// sd_notify(3) lines: READY=1, RELOADING=1, STOPPING=1, STATUS=...,
// WATCHDOG=1.
type Notifier interface {
	Notify(state string) error
	// WatchdogInterval is how often the manager wants WATCHDOG=1 at the
	// latest; zero when it does not watch.
	WatchdogInterval() time.Duration
}

// SystemdNotifier talks to systemd through $NOTIFY_SOCKET and reads the
// watchdog interval from $WATCHDOG_USEC (and $WATCHDOG_PID). Outside
// systemd (no NOTIFY_SOCKET) every call does nothing.
func SystemdNotifier() Notifier { return systemdNotifier{} }

type systemdNotifier struct{}

func (systemdNotifier) Notify(state string) error {
	_, err := sd.SdNotify(false, state)
	return err
}

func (systemdNotifier) WatchdogInterval() time.Duration {
	d, err := sd.SdWatchdogEnabled(false)
	if err != nil {
		return 0
	}
	return d
}

// reloadingState is RELOADING=1 with the CLOCK_MONOTONIC timestamp that
// Type=notify-reload services must send with it.
func reloadingState() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return "RELOADING=1"
	}
	return fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", ts.Nano()/1000)
}

// notify sends state to the notifier, if there is one; failures are logged
// (the manager may be gone, the daemon carries on).
func (d *Daemon) notify(state string) {
	if d.svc.notifier == nil {
		return
	}
	if err := d.svc.notifier.Notify(state); err != nil {
		d.log.Warn("service manager notification failed", "state", state, "err", err)
	}
}

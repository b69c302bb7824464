package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/luafw/luafw/daemon"
)

// acquireInstance takes the namespace's instance lock before luafw run
// touches anything (pidfile, metrics address, nftables). It returns the lock
// and 0, or nil and the exit code after reporting why.
func acquireInstance(stderr io.Writer) (*daemon.Instance, int) {
	paths, err := daemon.CurrentPaths(daemon.DefaultRunDir)
	if err != nil {
		fmt.Fprintf(stderr, "luafw run: %v\n", err)
		return nil, exitFailed
	}
	if err := daemon.CheckPrivileges(); err != nil {
		fmt.Fprintf(stderr, "luafw run: %v\n", err)
		return nil, exitFailed
	}
	inst, err := daemon.AcquireInstance(paths)
	var running *daemon.RunningError
	if errors.As(err, &running) {
		fmt.Fprintf(stderr, "luafw run: %v\n", err)
		return nil, exitRunning
	}
	if errors.Is(err, fs.ErrPermission) {
		fmt.Fprintf(stderr, "luafw run: cannot write %s (%v): run as root, or give luafw a run directory it may write (systemd: RuntimeDirectory=luafw)\n", paths.Dir, err)
		return nil, exitFailed
	}
	if err != nil {
		fmt.Fprintf(stderr, "luafw run: %v\n", err)
		return nil, exitFailed
	}
	return inst, 0
}

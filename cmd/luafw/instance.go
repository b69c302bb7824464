package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/luafw/luafw/daemon"
)

// acquireInstance takes the namespace's instance lock before luafw run
// touches anything (pidfile, metrics address, nftables). It returns the lock
// and 0, or nil and the exit code after reporting why.
func acquireInstance(stderr io.Writer) (*daemon.Instance, int) {
	paths, err := daemon.CurrentPaths(daemon.DefaultRunDir)
	if err != nil {
		fmt.Fprintf(stderr, "luafw run: %v\n", err)
		return nil, 1
	}
	inst, err := daemon.AcquireInstance(paths)
	var running *daemon.RunningError
	if errors.As(err, &running) {
		fmt.Fprintf(stderr, "luafw run: %v\n", err)
		return nil, exitRunning
	}
	if err != nil {
		fmt.Fprintf(stderr, "luafw run: %v\n", err)
		return nil, 1
	}
	return inst, 0
}

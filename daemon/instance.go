package daemon

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Instance is the lock that makes a daemon the only one of its network
// namespace: an exclusive flock on RunPaths.Lock, held for the life of the
// process (the kernel releases it when the process dies, however it dies)
// and removed by Release. The lock file holds the owner's pid, for the
// error a second daemon gives.
type Instance struct {
	lock *fileLock
}

// RunningError is returned by AcquireInstance when another process holds
// the namespace's lock.
type RunningError struct {
	Pid       int    // the running daemon's pid, 0 if unknown
	Namespace uint64 // inode of the network namespace
	Lock      string
}

func (e *RunningError) Error() string {
	who := "another luafw"
	if e.Pid > 0 {
		who = fmt.Sprintf("luafw (pid %d)", e.Pid)
	}
	return fmt.Sprintf("%s already runs in this network namespace (net:[%d]); it holds %s. Stop it first, or use `luafw reload`", who, e.Namespace, e.Lock)
}

// AcquireInstance takes the namespace's instance lock without waiting,
// creating the run directory (mode 0700) if needed. If another process
// holds the lock it returns a *RunningError and changes nothing. Without
// the right to write the run directory the error wraps fs.ErrPermission.
func AcquireInstance(p RunPaths) (*Instance, error) {
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("daemon: run directory: %w", err)
	}
	l, err := lockFile(p.Lock, strconv.Itoa(os.Getpid())+"\n")
	if errors.Is(err, errLocked) {
		return nil, &RunningError{Pid: lockOwner(p), Namespace: p.NS, Lock: p.Lock}
	}
	if err != nil {
		return nil, fmt.Errorf("daemon: instance lock: %w", err)
	}
	return &Instance{lock: l}, nil
}

// Release removes the lock file and gives the lock up (process exit gives
// it up too, leaving the file for the next daemon to take).
func (i *Instance) Release() error {
	if i == nil {
		return nil
	}
	return i.lock.release()
}

// lockOwner reads the pid in the lock file, else in the pidfile.
func lockOwner(p RunPaths) int {
	for _, name := range []string{p.Lock, p.Pid} {
		b, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			return pid
		}
	}
	return 0
}

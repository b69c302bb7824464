package daemon

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Instance is the lock that makes a daemon the only one of its network
// namespace: an exclusive flock on RunPaths.Lock, held for the life of the
// process (the kernel releases it when the process dies, however it dies).
// The lock file holds the owner's pid, for the error a second daemon
// gives.
type Instance struct {
	f *os.File
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
// holds the lock it returns a *RunningError and changes nothing.
func AcquireInstance(p RunPaths) (*Instance, error) {
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("daemon: run directory: %w", err)
	}
	f, err := os.OpenFile(p.Lock, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("daemon: instance lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, &RunningError{Pid: lockOwner(p), Namespace: p.NS, Lock: p.Lock}
		}
		return nil, fmt.Errorf("daemon: instance lock %s: %w", p.Lock, err)
	}
	// The pid is written only once the lock is ours, so a reader never
	// sees a loser's.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Instance{f: f}, nil
}

// Release gives the lock up (process exit does it too). The file stays:
// removing it would let a third process lock a new file while a second
// still waits on the old one.
func (i *Instance) Release() error {
	if i == nil || i.f == nil {
		return nil
	}
	err := i.f.Close()
	i.f = nil
	return err
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

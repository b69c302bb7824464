package daemon

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// fileLock is an exclusive flock on a lock file, held for the life of a
// run (the kernel releases it when the process dies, however it dies) and
// removed by release.
//
// Removing a lock file is safe with one rule: whoever takes the lock checks
// that the path still names the file it locked. A process that opened the
// file just before the holder removed it then finds its lock on a removed
// file, and tries again on the path's new one.
type fileLock struct {
	f    *os.File
	path string
}

// errLocked is lockFile's error when another process holds the lock.
var errLocked = errors.New("locked by another process")

// lockFile takes the lock on path without waiting, creating the file (mode
// 0600), and writes content into it once the lock is ours (so a reader
// never sees a loser's). Another holder gives an error wrapping errLocked.
func lockFile(path, content string) (*fileLock, error) {
	for range 100 {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, err
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("%s: %w", path, errLocked)
			}
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		var locked, named unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &locked); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		err = unix.Stat(path, &named)
		if err == nil && locked.Dev == named.Dev && locked.Ino == named.Ino {
			if err := f.Truncate(0); err == nil {
				_, _ = f.WriteAt([]byte(content), 0)
			}
			return &fileLock{f: f, path: path}, nil
		}
		f.Close()
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		// The holder removed the file we locked: try the path's new one.
	}
	return nil, fmt.Errorf("lock %s: the file keeps being replaced", path)
}

// release removes the lock file while still holding the lock, then lets
// the lock go.
func (l *fileLock) release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := os.Remove(l.path)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}

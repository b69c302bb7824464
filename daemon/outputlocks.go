package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/luafw/luafw/config"
)

// OutputLockSuffix names the lock file beside each file a run writes
// (state.file, events.file, capture.file): FILE.lock.
const OutputLockSuffix = ".lock"

// lockOutputs locks the files this run writes, each through a lock file
// beside it, before anything is written. Two daemons (in different network
// namespaces, so the instance lock does not keep them apart) configured
// with the same file would overwrite each other's saved state or mix their
// event lines: the second is refused at start, naming the first. release
// removes the lock files.
func (d *Daemon) lockOutputs() (release func(), err error) {
	var held []*fileLock
	release = func() {
		for _, l := range held {
			if err := l.release(); err != nil {
				d.log.Warn("removing a lock file", "err", err)
			}
		}
	}
	ns, _ := NamespaceID()
	owner := fmt.Sprintf("pid %d, net:[%d]", os.Getpid(), ns)
	for _, f := range outputFiles(d.cfg) {
		lock := f.path + OutputLockSuffix
		err := os.MkdirAll(filepath.Dir(f.path), 0o750)
		var l *fileLock
		if err == nil {
			l, err = lockFile(lock, owner+"\n")
		}
		switch {
		case errors.Is(err, errLocked):
			release()
			who := "another luafw"
			if b, rerr := os.ReadFile(lock); rerr == nil && len(b) > 0 {
				who += " (" + strings.TrimSpace(string(b)) + ")"
			}
			return nil, fmt.Errorf("%s %s is in use by %s, which holds %s: give each daemon its own file", f.key, f.path, who, lock)
		case err != nil:
			// A directory luafw cannot write: the file's own writer
			// reports it as before (events and capture refuse the start,
			// a state file that cannot be saved is logged at each save).
			d.log.Warn("cannot lock a file this run writes; another daemon configured with it would go unnoticed", "key", f.key, "file", f.path, "err", err)
			continue
		}
		held = append(held, l)
	}
	return release, nil
}

type outputFile struct{ key, path string }

// outputFiles are the files a run with cfg writes, by configuration key.
func outputFiles(cfg *config.File) []outputFile {
	var out []outputFile
	add := func(key, path string) {
		if path = cfg.Resolve(path); path != "" && path != config.Stdout {
			out = append(out, outputFile{key, path})
		}
	}
	if cfg.State != nil {
		add("state.file", cfg.State.File)
	}
	if cfg.Events != nil {
		add("events.file", cfg.Events.File)
	}
	if cfg.Capture != nil {
		add("capture.file", cfg.Capture.File)
	}
	return out
}

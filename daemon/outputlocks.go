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
		if err := os.MkdirAll(filepath.Dir(f.path), 0o750); err != nil {
			release()
			return nil, fmt.Errorf("%s %s: %w", f.key, f.path, err)
		}
		lock := f.path + OutputLockSuffix
		l, err := lockFile(lock, owner+"\n")
		if errors.Is(err, errLocked) {
			release()
			who := "another luafw"
			if b, rerr := os.ReadFile(lock); rerr == nil && len(b) > 0 {
				who += " (" + strings.TrimSpace(string(b)) + ")"
			}
			return nil, fmt.Errorf("%s %s is in use by %s, which holds %s: give each daemon its own file", f.key, f.path, who, lock)
		}
		if err != nil {
			release()
			return nil, fmt.Errorf("%s %s: %w", f.key, f.path, err)
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

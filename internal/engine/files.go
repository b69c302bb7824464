package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/luafw/luafw/host/netset"
)

// The file boundary. A script reads files (net.load) only inside its
// allowed directories: the directory of its File (when it was read from
// there, not given as Source) and PluginSpec.AllowDirs. Paths are resolved
// (".." and symlinks, on the target and on the directories) before the
// check, and the file opened is checked again by its real path, so a
// symlink swapped in between does not lead outside. Whatever the reason a
// path is refused (outside, missing, a directory, unreadable), the error is
// the same, so a script cannot probe which files exist.

// fileError is the one error of a refused path; given is the path as the
// script gave it.
func fileError(given string) error {
	return fmt.Errorf("%q is not a readable file in the plugin's allowed directories", given)
}

// resolveAllowDirs returns the directories spec's script may read files
// from, resolved. An AllowDirs entry that is not a directory is the
// operator's mistake, and a load error.
func resolveAllowDirs(spec PluginSpec) ([]string, error) {
	dirs := make([]string, 0, len(spec.AllowDirs)+1)
	for _, d := range spec.AllowDirs {
		r, err := RealPath(d)
		if err == nil {
			var st os.FileInfo
			if st, err = os.Stat(r); err == nil && !st.IsDir() {
				err = errors.New("not a directory")
			}
		}
		if err != nil {
			return nil, &LoadError{Plugin: spec.Name, File: spec.File, Reason: fmt.Sprintf("allowed directory %s: %v", d, err)}
		}
		dirs = append(dirs, r)
	}
	if spec.Source == nil {
		if r, err := RealPath(filepath.Dir(spec.File)); err == nil {
			dirs = append(dirs, r)
		}
	}
	return dirs, nil
}

// RealPath is path made absolute with every symlink resolved, as the file
// boundary resolves paths; `luafw test` and `luafw check` resolve the paths
// they check the same way.
func RealPath(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(abs)
}

// Within reports whether the resolved path is one of dirs or under one.
func Within(path string, dirs []string) bool {
	for _, d := range dirs {
		if path == d || strings.HasPrefix(path, strings.TrimSuffix(d, string(filepath.Separator))+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

// openAllowed opens the regular file at path (relative paths from the
// plugin's directory) if it is inside the allowed directories. It returns
// the file and its resolved path; any refusal is fileError(path).
func (p *plugin) openAllowed(path string) (*os.File, string, error) {
	full := path
	if !filepath.IsAbs(full) {
		full = filepath.Join(filepath.Dir(p.spec.File), full)
	}
	dirs := p.allowDirs
	real, err := RealPath(full)
	if err != nil || !Within(real, dirs) {
		return nil, "", fileError(path)
	}
	// O_NONBLOCK: opening a FIFO someone placed there must not hang the
	// load (it is refused below as not a regular file).
	f, err := os.OpenFile(real, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, "", fileError(path)
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, "", fileError(path)
	}
	// The path may have changed between the check and the open; the
	// kernel knows what was opened.
	if opened, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f.Fd())); err == nil && !Within(opened, dirs) {
		f.Close()
		return nil, "", fileError(path)
	}
	return f, real, nil
}

// loadSet reads a CIDR list file inside the allowed directories, once per
// loaded set of plugins. Errors in the file name it (as the script gave
// it, relative to the plugin's directory) and the line.
// check (may be nil) is called every listCheckEvery lines: the load
// budget and the heap watch stop a long read.
func (p *plugin) loadSet(path string, check func() error) (*netset.Set, error) {
	p.filesMu.Lock()
	defer p.filesMu.Unlock()
	f, real, err := p.openAllowed(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if s, ok := p.files[real]; ok {
		return s, nil
	}
	name := path
	if !filepath.IsAbs(name) {
		name = filepath.Join(filepath.Dir(p.spec.File), name)
	}
	if st, err := f.Stat(); err == nil && st.Size() > MaxListFileSize {
		return nil, fmt.Errorf("%s: larger than the limit of %d bytes (%d MiB)", name, MaxListFileSize, MaxListFileSize>>20)
	}
	s, err := netset.ReadWith(f, name, netset.ReadOptions{MaxBytes: MaxListFileSize, MaxEntries: MaxListEntries,
		Check: check, CheckEvery: listCheckEvery})
	if err != nil {
		return nil, err
	}
	p.files[real] = s
	return s, nil
}

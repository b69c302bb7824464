package daemon

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Releasing the instance lock removes its file; the next daemon makes a new
// one.
func TestInstanceLockRemoved(t *testing.T) {
	p := PathsFor(filepath.Join(t.TempDir(), "run"), 4026531998)
	inst, err := AcquireInstance(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p.Lock); err != nil {
		t.Fatalf("lock file while held: %v", err)
	}
	if err := inst.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p.Lock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("lock file after release: %v, want it removed", err)
	}
	again, err := AcquireInstance(p)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	defer again.Release()
	if out, err := exec.Command("flock", "-n", p.Lock, "true").CombinedOutput(); err == nil {
		t.Errorf("another process took the new lock (%s)", out)
	}
}

// A lock on a file its holder removed is no lock: lockFile, having opened
// the old file, finds the path names another and takes that one.
func TestLockFileFollowsThePath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	first, err := lockFile(path, "first\n")
	if err != nil {
		t.Fatal(err)
	}
	// An opener of the old file, as a second daemon would have between
	// its open and its flock.
	stale, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer stale.Close()
	if _, err := lockFile(path, "second\n"); !errors.Is(err, errLocked) {
		t.Fatalf("second lock while held: %v, want errLocked", err)
	}
	if err := first.release(); err != nil {
		t.Fatal(err)
	}
	second, err := lockFile(path, "second\n")
	if err != nil {
		t.Fatal(err)
	}
	defer second.release()
	if b, _ := os.ReadFile(path); string(b) != "second\n" {
		t.Errorf("lock file holds %q", b)
	}
	// The old file, still open, is unlinked: whoever locks it holds nothing
	// the path names.
	if out, err := exec.Command("flock", "-n", path, "true").CombinedOutput(); err == nil {
		t.Errorf("another process took the lock the path names (%s)", out)
	}
}

// A second daemon whose configuration names a state or events file another
// holds is refused, naming the holder and the file.
func TestOutputFilesLocked(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "luafw.yaml")
	cfgText := "plugins:\n  - file: a.lua\nstate: {file: var/state.json}\nevents: {file: log/events.json}\ncapture: {file: log/drops.pcapng}\n"
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a.lua"), []byte("fw.register{hook='input', fn=function() end}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	newD := func() *Daemon {
		d, err := New(Options{ConfigPath: cfgPath})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(d.Engine().Close)
		return d
	}
	first, second := newD(), newD()
	unlock, err := first.lockOutputs()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"var/state.json.lock", "log/events.json.lock", "log/drops.pcapng.lock"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("lock file %s: %v", f, err)
		}
	}
	_, err = second.lockOutputs()
	if err == nil || !strings.Contains(err.Error(), "state.file "+filepath.Join(dir, "var/state.json")+" is in use by another luafw (pid ") ||
		!strings.Contains(err.Error(), "give each daemon its own file") {
		t.Fatalf("second daemon: %v", err)
	}
	unlock()
	for _, f := range []string{"var/state.json.lock", "log/events.json.lock", "log/drops.pcapng.lock"} {
		if _, err := os.Stat(filepath.Join(dir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("lock file %s after release: %v", f, err)
		}
	}
	unlock2, err := second.lockOutputs()
	if err != nil {
		t.Fatalf("after the first let go: %v", err)
	}
	unlock2()
}

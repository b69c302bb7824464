package daemon

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// A second lock of the same namespace's instance is refused with the
// owner's pid; a lock of another namespace is not; releasing lets the next
// one in.
func TestInstanceLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	p := PathsFor(dir, 4026531999)
	first, err := AcquireInstance(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("run directory: %v %v, want mode 0700", fi.Mode(), err)
	}
	// flock is per open file: a second open in this process conflicts just
	// as another process's would. Check both.
	_, err = AcquireInstance(p)
	var re *RunningError
	if !errors.As(err, &re) || re.Pid != os.Getpid() || re.Namespace != 4026531999 {
		t.Fatalf("second lock: %v, want a RunningError naming pid %d", err, os.Getpid())
	}
	if !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) || !strings.Contains(err.Error(), "net:[4026531999]") {
		t.Errorf("error does not name the pid and namespace: %v", err)
	}
	if out, err := exec.Command("flock", "-n", p.Lock, "true").CombinedOutput(); err == nil {
		t.Errorf("another process took the held lock (%s)", out)
	}
	other, err := AcquireInstance(PathsFor(dir, 4026532000))
	if err != nil {
		t.Fatalf("another namespace's lock: %v", err)
	}
	other.Release()
	first.Release()
	again, err := AcquireInstance(p)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again.Release()
}

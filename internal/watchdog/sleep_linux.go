package watchdog

import (
	"syscall"
	"time"
)

// sleepSyscall sleeps for d in a system call (see watchHeap).
func sleepSyscall(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	_ = syscall.Nanosleep(&ts, nil) // EINTR: a shorter sleep is fine
}

//go:build !linux

package watchdog

import "time"

// sleepSyscall sleeps for d; elsewhere than Linux, on a runtime timer.
func sleepSyscall(d time.Duration) { time.Sleep(d) }

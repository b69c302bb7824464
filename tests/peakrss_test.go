package tests

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Peak memory of the processes the end-to-end tests run, in KiB, as the
// kernel counts it (resident set high-water mark), so that a bound on it
// holds whatever the Go runtime or gopher-lua allocate.

// peakRSS is the peak resident set of an exited child (getrusage's
// ru_maxrss, which Linux gives in KiB).
func peakRSS(ps *os.ProcessState) (int64, error) {
	if ps == nil {
		return 0, fmt.Errorf("peak RSS: the process has not exited")
	}
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok || ru == nil {
		return 0, fmt.Errorf("peak RSS: no rusage for pid %d", ps.Pid())
	}
	return ru.Maxrss, nil
}

// vmHWM is a running process's peak resident set (VmHWM in
// /proc/PID/status, in KiB).
func vmHWM(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("peak RSS: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:")
		if !ok {
			continue
		}
		kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("peak RSS: pid %d: bad VmHWM line %q", pid, sc.Text())
		}
		return kib, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("peak RSS: pid %d: %w", pid, err)
	}
	return 0, fmt.Errorf("peak RSS: pid %d: no VmHWM in its status", pid)
}

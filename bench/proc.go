package main

import (
	"bufio"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/procfs"
)

// userHZ is the unit of /proc's CPU times (USER_HZ, 100 on Linux).
const userHZ = 100

// procCPU returns the user+system CPU time of process pid (all its
// threads) from /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu of pid %d: %w", pid, err)
	}
	return parseStatCPU(string(b))
}

// parseStatCPU reads utime and stime (fields 14 and 15) of a
// /proc/PID/stat line; the command name (field 2) may hold spaces.
func parseStatCPU(s string) (time.Duration, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc stat line %q: no command name", s)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat line %q: too short", s)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc stat line: bad utime/stime %q %q", f[11], f[12])
	}
	return time.Duration(ut+st) * time.Second / userHZ, nil
}

// machineCPU is the machine's CPU time from /proc/stat, in USER_HZ ticks.
type machineCPU struct{ busy, total uint64 }

func readMachineCPU() (machineCPU, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return machineCPU{}, fmt.Errorf("machine cpu: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return machineCPU{}, fmt.Errorf("machine cpu: empty /proc/stat: %w", sc.Err())
	}
	return parseMachineCPU(sc.Text())
}

// parseMachineCPU reads the aggregate "cpu" line of /proc/stat: idle and
// iowait are idle, the rest (user, nice, system, irq, softirq, steal) busy.
func parseMachineCPU(line string) (machineCPU, error) {
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return machineCPU{}, fmt.Errorf("machine cpu: unexpected /proc/stat line %q", line)
	}
	var m machineCPU
	for i, s := range f[1:9] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return machineCPU{}, fmt.Errorf("machine cpu: %q: %w", line, err)
		}
		m.total += v
		if i != 3 && i != 4 { // idle, iowait
			m.busy += v
		}
	}
	return m, nil
}

// kernelQueue is one line of /proc/net/netfilter/nfnetlink_queue.
type kernelQueue struct {
	Queue   uint16 `json:"queue"`
	Waiting uint64 `json:"waiting"`
	Dropped uint64 `json:"dropped"`      // the queue was full
	UDrop   uint64 `json:"user_dropped"` // netlink could not deliver to the reader
	Seq     uint64 `json:"queued"`       // packets queued so far (the last packet id)
}

// readKernelQueues reads the NFQUEUE table under a proc directory
// ("/proc/thread-self" for the calling thread's network namespace). A
// kernel without the table has no queues.
func readKernelQueues(procDir string) (map[uint16]kernelQueue, error) {
	out := map[uint16]kernelQueue{}
	fs, err := procfs.NewFS(procDir)
	if err != nil {
		return nil, fmt.Errorf("nfnetlink_queue: %w", err)
	}
	qs, err := fs.NFNetLinkQueue()
	if errors.Is(err, iofs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("nfnetlink_queue: %w", err)
	}
	for _, q := range qs {
		out[uint16(q.QueueID)] = kernelQueue{Queue: uint16(q.QueueID), Waiting: uint64(q.QueueTotal),
			Dropped: uint64(q.QueueDropped), UDrop: uint64(q.QueueUserDropped), Seq: uint64(q.SequenceID)}
	}
	return out, nil
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/luafw/luafw/tests/lab"
)

// consumer is a queue reader (luafw or nfqbaseline) running in the router.
type consumer struct {
	name   string
	cmd    *exec.Cmd
	stdout syncBuffer
	stderr syncBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // Wait's result, set before done closes
	stopMu sync.Mutex
}

// syncBuffer is a bytes.Buffer safe for a writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startConsumer starts name with args in the router (guarded, killed with
// ctx) and waits until ready reports true, the process exits, or
// readyTimeout passes.
func startConsumer(ctx context.Context, router *lab.NS, label, name string, args []string, ready func(*consumer) (bool, error)) (*consumer, error) {
	cmd, err := router.Command(ctx, name, args...)
	if err != nil {
		return nil, err
	}
	c := &consumer{name: label, cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &c.stdout, &c.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: start: %w", label, err)
	}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-c.done:
			return nil, fmt.Errorf("%s exited before it was ready: %v\n%s", label, c.err, tail(c.stderr.String(), 2000))
		default:
		}
		ok, err := ready(c)
		if err != nil {
			c.kill()
			return nil, fmt.Errorf("%s: %w", label, err)
		}
		if ok {
			return c, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			c.kill()
			return nil, fmt.Errorf("%s not ready after %v (ctx: %v)\n%s", label, readyTimeout, ctx.Err(), tail(c.stderr.String(), 2000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readyTimeout bounds how long a consumer may take to bind its queues.
const readyTimeout = 20 * time.Second

// pid is the consumer's process id: `ip netns exec` and the guard's shell
// exec the program in place, so it is the program's own.
func (c *consumer) pid() int { return c.cmd.Process.Pid }

// cpu is the consumer's CPU time so far (user + system, all threads).
func (c *consumer) cpu() (time.Duration, error) { return procCPU(c.pid()) }

// checkComm verifies that the consumer's pid runs the program binary (so
// its CPU time is the program's, not a wrapper's).
func (c *consumer) checkComm(binary string) error {
	want := filepath.Base(binary)
	if len(want) > 15 { // the kernel keeps 15 bytes of the name
		want = want[:15]
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", c.pid()))
	if err != nil {
		return fmt.Errorf("%s: %w", c.name, err)
	}
	if got := strings.TrimSpace(string(b)); got != want {
		return fmt.Errorf("%s: pid %d runs %q, not %q: CPU figures would be wrong", c.name, c.pid(), got, want)
	}
	return nil
}

// stop sends SIGTERM and waits (up to stopTimeout) for the exit, then
// kills. It returns the process's error, if it failed.
func (c *consumer) stop() error {
	c.stopMu.Lock()
	defer c.stopMu.Unlock()
	select {
	case <-c.done:
		return c.exitErr()
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return c.exitErr()
	case <-time.After(stopTimeout):
		c.kill()
		return fmt.Errorf("%s did not stop within %v of SIGTERM; killed", c.name, stopTimeout)
	}
}

const stopTimeout = 15 * time.Second

func (c *consumer) exitErr() error {
	if c.err != nil {
		return fmt.Errorf("%s: %w\n%s", c.name, c.err, tail(c.stderr.String(), 2000))
	}
	return nil
}

// kill ends the process group at once and waits for the exit.
func (c *consumer) kill() {
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	<-c.done
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// baselineResult is nfqbaseline's JSON line.
type baselineResult struct {
	Mode     string  `json:"mode"`
	Packets  uint64  `json:"packets"`
	PPS      float64 `json:"pps"`
	Errors   uint64  `json:"errors"`
	MaxBurst uint64  `json:"max_burst"`
	ENOBUFS  uint64  `json:"enobufs"`
}

func (c *consumer) baselineResult() (baselineResult, error) {
	var r baselineResult
	out := strings.TrimSpace(c.stdout.String())
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return r, fmt.Errorf("%s: output %q: %w", c.name, out, err)
	}
	return r, nil
}

// queuesBound returns a readiness check: the router's kernel lists at
// least n bound queues.
func queuesBound(ctx context.Context, router *lab.NS, n int) func(*consumer) (bool, error) {
	return func(*consumer) (bool, error) {
		qs, err := readQueues(ctx, router)
		if err != nil {
			return false, err
		}
		return len(qs) >= n, nil
	}
}

// luafwRunning is luafw's readiness check: it has logged that it runs
// (rules installed, queues bound).
func luafwRunning(c *consumer) (bool, error) {
	return strings.Contains(c.stderr.String(), "luafw running"), nil
}

// readQueues reads the router's /proc/net/netfilter/nfnetlink_queue (on a
// thread inside the router's namespace: /proc/net would show the
// process's).
func readQueues(ctx context.Context, router *lab.NS) (qs map[uint16]kernelQueue, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	err = router.Do(func() error {
		qs, err = readKernelQueues("/proc/thread-self")
		return err
	})
	return qs, err
}

// queueArgs are nfqbaseline's queue flags for n queues from 0.
func queueArgs(n int) []string {
	if n == 1 {
		return []string{"-queue", "0"}
	}
	return []string{"-queues", "0-" + strconv.Itoa(n-1), "-per-queue"}
}

package tests

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/luafw/luafw/tests/lab"
)

// The end-to-end tests run the real luafw binary in the lab's router
// namespace and send real traffic through it.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// luafwBinary builds cmd/luafw once per test run.
func luafwBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "luafw-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "luafw")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/luafw/luafw/cmd/luafw").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// syncBuf collects a process's output.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// daemon is a luafw run process in a lab namespace.
type daemon struct {
	t       *testing.T
	cmd     *exec.Cmd
	logs    *syncBuf
	done    chan struct{}
	err     error
	dir     string
	pidfile string
	ns      *lab.NS
}

// writeFiles writes name -> content into dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// startDaemon writes the configuration (luafw.yaml) and plugin files into a
// temporary directory and runs luafw in ns until it reports it is running.
// Budgets are wall-clock time and `go test ./...` runs packages side by side
// on few cores, so unless the configuration sets a default budget the
// plugins get 1s: these tests are about verdicts, not speed (the budget
// tests set per-plugin budgets, which take precedence).
func startDaemon(t *testing.T, ns *lab.NS, files map[string]string, extra ...string) *daemon {
	t.Helper()
	if cfg := files["luafw.yaml"]; !strings.Contains(cfg, "\nbudget:") && !strings.HasPrefix(cfg, "budget:") {
		files["luafw.yaml"] = cfg + "budget: 1s\n"
	}
	dir := t.TempDir()
	writeFiles(t, dir, files)
	return startDaemonIn(t, ns, dir, extra...)
}

func startDaemonIn(t *testing.T, ns *lab.NS, dir string, extra ...string) *daemon {
	t.Helper()
	return startDaemonConfig(t, ns, filepath.Join(dir, "luafw.yaml"), filepath.Join(dir, "luafw.pid"), extra...)
}

// startDaemonConfig runs luafw with the configuration file at path.
func startDaemonConfig(t *testing.T, ns *lab.NS, path, pidfile string, extra ...string) *daemon {
	t.Helper()
	return startDaemonEnv(t, ns, path, pidfile, nil, extra...)
}

// startDaemonEnv is startDaemonConfig with variables added to luafw's
// environment.
func startDaemonEnv(t *testing.T, ns *lab.NS, path, pidfile string, env []string, extra ...string) *daemon {
	t.Helper()
	d := &daemon{t: t, logs: &syncBuf{}, done: make(chan struct{}), dir: filepath.Dir(path), pidfile: pidfile, ns: ns}
	args := append([]string{"run", "--config", path, "--log-level", "debug", "--pidfile", d.pidfile}, extra...)
	cmd, err := ns.Command(context.Background(), luafwBinary(t), args...)
	if err != nil {
		t.Fatal(err)
	}
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = d.logs, d.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.cmd = cmd
	go func() {
		d.err = cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			d.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-d.done:
			case <-time.After(10 * time.Second):
				d.cmd.Process.Kill()
				<-d.done
			}
		}
		if t.Failed() {
			t.Logf("luafw log:\n%s", d.logs.String())
		}
	})
	d.waitLog("luafw running", 20*time.Second)
	return d
}

// waitLog waits until the daemon's log contains s.
func (d *daemon) waitLog(s string, timeout time.Duration) {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(d.logs.String(), s) {
			return
		}
		select {
		case <-d.done:
			d.t.Fatalf("luafw exited (%v) before logging %q:\n%s", d.err, s, d.logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	d.t.Fatalf("luafw did not log %q within %v:\n%s", s, timeout, d.logs.String())
}

// stop sends SIGTERM and checks the daemon exits 0.
func (d *daemon) stop() {
	d.t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		d.t.Fatalf("luafw did not exit within 15s of SIGTERM:\n%s", d.logs.String())
	}
	if d.err != nil {
		d.t.Fatalf("luafw exited with %v after SIGTERM:\n%s", d.err, d.logs.String())
	}
}

// kill kills the daemon with SIGKILL (a crash).
func (d *daemon) kill() {
	d.t.Helper()
	d.cmd.Process.Kill()
	<-d.done
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// connect is a bounded TCP connect from ns to addr:port.
func connect(ctx context.Context, ns *lab.NS, addr netip.Addr, port uint16, timeout time.Duration) lab.ConnectResult {
	return ns.TCPConnect(ctx, netip.AddrPortFrom(addr, port).String(), timeout)
}

// serveTCP starts echo servers on the given ports in ns.
func serveTCP(t *testing.T, ns *lab.NS, ports ...uint16) {
	t.Helper()
	for _, p := range ports {
		srv, err := ns.ServeTCP(fmt.Sprintf(":%d", p))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
	}
}

// ourRules returns what of luafw's is left in the namespace's rules.
func ourRules(t *testing.T, ctx context.Context, ns *lab.NS) string {
	t.Helper()
	nft, err := ns.Run(ctx, "nft", "list", "tables")
	if err != nil {
		t.Fatal(err)
	}
	ipt, err := ns.Run(ctx, "iptables-save")
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, l := range strings.Split(nft+"\n"+ipt, "\n") {
		if strings.Contains(l, "luafw") {
			left = append(left, l)
		}
	}
	return strings.Join(left, "\n")
}

package tests

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	luafwd "github.com/luafw/luafw/daemon"
	"github.com/luafw/luafw/tests/lab"
)

// How luafw run refuses to start, and what it leaves behind when it stops.

const forwardAccept = `fw.register{name="pass", hook="forward", fn=function(pkt) return fw.ACCEPT end}
`

// runFails runs luafw with args in ns, expects it to exit with code, and
// returns its stderr.
func runFails(t *testing.T, ctx context.Context, ns *lab.NS, code int, args ...string) string {
	t.Helper()
	cmd, err := ns.Command(ctx, luafwBinary(t), args...)
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr syncBuf
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != code {
		t.Fatalf("luafw %s: %v, want exit code %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, code, stdout.String(), stderr.String())
	}
	return stderr.String()
}

// noTable checks that luafw left no table of its own in ns.
func noTable(t *testing.T, ctx context.Context, ns *lab.NS) {
	t.Helper()
	if out, err := ns.Run(ctx, "nft", "list", "table", "ip", "luafw"); err == nil {
		t.Errorf("a refused start left its table behind:\n%s", out)
	}
}

// A metrics address luafw cannot listen on (a port the test holds, in the
// namespace it made) stops the start with exit code 1 and the reason,
// before any rule is installed; the instance lock file is gone after.
func TestRunMetricsAddressInUse(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 60*time.Second)
	ln, err := l.Router.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"luafw.yaml": "plugins:\n  - file: pass.lua\n", "pass.lua": forwardAccept})
	addr := ln.Addr().String()
	errs := runFails(t, ctx, l.Router, 1, "run", "--config", filepath.Join(dir, "luafw.yaml"), "--pidfile", filepath.Join(dir, "luafw.pid"), "--metrics", addr)
	if !strings.Contains(errs, "luafw run: metrics address "+addr+": ") || !strings.Contains(errs, "address already in use") {
		t.Errorf("the refusal does not say the metrics address is in use:\n%s", errs)
	}
	noTable(t, ctx, l.Router)
	if _, err := os.Stat(luafwd.PathsFor(luafwd.DefaultRunDir, l.Router.Inode()).Lock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("instance lock file after the refused start: %v", err)
	}
}

// A daemon that stops removes its lock files: the namespace's under
// /run/luafw and the one beside its state file.
func TestRunLockFilesRemoved(t *testing.T) {
	l := lab.New(t, lab.Options{})
	d := startDaemon(t, l.Router, map[string]string{
		"luafw.yaml": "plugins:\n  - file: pass.lua\nstate: {file: state.json}\n", "pass.lua": forwardAccept})
	locks := []string{luafwd.PathsFor(luafwd.DefaultRunDir, l.Router.Inode()).Lock, filepath.Join(d.dir, "state.json"+luafwd.OutputLockSuffix)}
	for _, f := range locks {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("lock file while running: %v", err)
		}
	}
	d.stop()
	for _, f := range locks {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("lock file %s after stop: %v, want it removed", f, err)
		}
	}
	if _, err := os.Stat(filepath.Join(d.dir, "state.json")); err != nil {
		t.Errorf("the state file was not saved at stop: %v", err)
	}
}

// Two daemons in different network namespaces (so the instance lock does
// not keep them apart) must not share a state file or an events file: the
// second is refused, naming the first, and touches nothing.
func TestRunSharedFilesRefused(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 60*time.Second)
	shared := t.TempDir()
	for _, tc := range []struct{ key, cfg, file string }{
		{"state.file", "state: {file: " + shared + "/state.json}\n", shared + "/state.json"},
		{"events.file", "events: {file: " + shared + "/events.json}\n", shared + "/events.json"},
	} {
		t.Run(tc.key, func(t *testing.T) {
			first := startDaemon(t, l.Router, map[string]string{"luafw.yaml": "plugins:\n  - file: pass.lua\n" + tc.cfg, "pass.lua": forwardAccept})
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{"luafw.yaml": "plugins:\n  - file: pass.lua\n" + tc.cfg, "pass.lua": forwardAccept})
			errs := runFails(t, ctx, l.Server, 1, "run", "--config", filepath.Join(dir, "luafw.yaml"), "--pidfile", filepath.Join(dir, "luafw.pid"))
			want := fmt.Sprintf("%s %s is in use by another luafw (pid %d, net:[%d])", tc.key, tc.file, first.cmd.Process.Pid, l.Router.Inode())
			if !strings.Contains(errs, want) {
				t.Errorf("second daemon's refusal lacks %q:\n%s", want, errs)
			}
			noTable(t, ctx, l.Server)
			first.stop()
		})
	}
}

// As a user without CAP_NET_ADMIN, luafw run says it needs root or
// CAP_NET_ADMIN, with exit code 1, before it touches anything.
func TestRunNotRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run luafw as another user")
	}
	ctx := testCtx(t, 30*time.Second)
	// A copy of the binary and a configuration the user "nobody" can reach.
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "luafw")
	src, err := os.Open(luafwBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	writeFiles(t, dir, map[string]string{"luafw.yaml": "plugins:\n  - file: pass.lua\n", "pass.lua": forwardAccept})
	cmd := exec.CommandContext(ctx, bin, "run", "--config", filepath.Join(dir, "luafw.yaml"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("luafw run as nobody: %v, want exit code 1:\n%s", err, out)
	}
	if want := "luafw run: needs root or CAP_NET_ADMIN (uid 65534 has not)"; !strings.Contains(string(out), want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
	if strings.Contains(string(out), "permission denied") {
		t.Errorf("the refusal is a bare permission error:\n%s", out)
	}

	// With CAP_NET_ADMIN but no right to write the run directory, it says
	// which directory and what to do.
	cmd = exec.CommandContext(ctx, bin, "run", "--config", filepath.Join(dir, "luafw.yaml"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534},
		AmbientCaps: []uintptr{unix.CAP_NET_ADMIN}}
	out, err = cmd.CombinedOutput()
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("luafw run as nobody with CAP_NET_ADMIN: %v, want exit code 1:\n%s", err, out)
	}
	if want := "luafw run: cannot write " + luafwd.DefaultRunDir + " ("; !strings.Contains(string(out), want) ||
		!strings.Contains(string(out), "run as root, or give luafw a run directory it may write") {
		t.Errorf("output lacks %q and what to do:\n%s", want, out)
	}
}

// trace --plugin with a plugin the daemon has not loaded fails at once,
// naming the loaded ones; a filter that fails shows its error.
func TestTraceMistakes(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 60*time.Second)
	d := startDaemon(t, l.Router, map[string]string{"luafw.yaml": "plugins:\n  - file: pass.lua\n", "pass.lua": forwardAccept})
	start := time.Now()
	errs := runFails(t, ctx, l.Router, 1, "trace", "--plugin", "nosuch", "--for", "50s")
	if !strings.Contains(errs, `luafw trace: no plugin "nosuch" is loaded (plugins: pass)`) {
		t.Errorf("trace --plugin nosuch: %s", errs)
	}
	if took := time.Since(start); took > 40*time.Second {
		t.Errorf("trace --plugin nosuch ran its time (%v) instead of failing", took)
	}

	tr := startTrace(t, ctx, d, nil, "--for", "3s", `error("no such thing as " .. pkt.proto)`)
	if _, err := l.Client.UDPFlood(ctx, l.Server.Addr4.String()+":7000", 20, 32, 200); err != nil {
		t.Fatal(err)
	}
	tr.wait(t, 40*time.Second)
	if errs := tr.stderr.String(); !strings.Contains(errs, "the filter failed on them: ") || !strings.Contains(errs, "no such thing as udp") {
		t.Errorf("a failing filter's error is not shown:\n%s", errs)
	}
}

// The kernel's refusal of NFQA_CFG_F_CONNTRACK, where it refuses, is one
// line per start that calls it harmless, however many sockets open.
func TestConntrackRefusalLoggedOnce(t *testing.T) {
	l := lab.New(t, lab.Options{})
	d := startDaemon(t, l.Router, map[string]string{
		"luafw.yaml": "plugins:\n  - file: two.lua\nqueue: {balance: 2}\n",
		"two.lua": `fw.register{name="a", hook="forward", fn=function(pkt) return fw.ACCEPT end}
fw.register{name="b", hook="input", fn=function(pkt) return fw.ACCEPT end}
`})
	d.stop()
	logs := d.logs.String()
	if strings.Contains(logs, `level=INFO msg="nfqueue: kernel refused NFQA_CFG_F_CONNTRACK`) {
		t.Errorf("the per-socket line is still logged at info:\n%s", logs)
	}
	n := strings.Count(logs, "NFQA_CFG_F_CONNTRACK refused")
	if n > 1 {
		t.Errorf("the refusal is logged %d times, want once:\n%s", n, logs)
	}
	if n == 1 && !strings.Contains(logs, "expected on kernels without it and harmless") {
		t.Errorf("the refusal line does not say it is harmless:\n%s", logs)
	}
	t.Logf("refusal lines: %d (0: this kernel grants NFQA_CFG_F_CONNTRACK)", n)
}

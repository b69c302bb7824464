package tests

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFleetTrustsOnlyCredentials: a Redis backend without credentials is
// refused unless the configuration says auth: none (and then a warning is
// logged); a wrong password fails the start with a clear error; with
// on_auth_failure: local the node starts on local state, says why it is
// not connected in `luafw status`, and says it again in the log.
func TestFleetTrustsOnlyCredentials(t *testing.T) {
	needRedis(t)
	ctx := testCtx(t, 2*time.Minute)
	f := newFleet(t, ctx)
	// runFails runs luafw with the configuration and returns its output,
	// failing the test if it keeps running.
	runFails := func(cfg string) string {
		t.Helper()
		files := fleetConfig("10.201.5.2:6379")
		files["luafw.yaml"] = cfg
		dir := t.TempDir()
		writeFiles(t, dir, files)
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		cmd, err := f.l.Router.Command(cctx, luafwBinary(t), "run", "--config", filepath.Join(dir, "luafw.yaml"), "--pidfile", filepath.Join(dir, "pid"))
		if err != nil {
			t.Fatal(err)
		}
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if cctx.Err() != nil || !errors.As(err, &ee) {
			t.Fatalf("luafw kept running or exited 0 (%v):\n%s", err, out)
		}
		return string(out)
	}
	base := fleetConfig("10.201.5.2:6379")["luafw.yaml"]

	// No credentials at all: refused at the configuration.
	noCreds := strings.Replace(base, ", password: "+fleetPassword, "", 1)
	if out := runFails(noCreds); !strings.Contains(out, "state.redis: no credentials") || !strings.Contains(out, "auth: none") {
		t.Errorf("no credentials: %s", out)
	}
	// A wrong password: the start fails and says why.
	wrong := strings.Replace(base, "password: "+fleetPassword, "password: not-the-password", 1)
	if out := runFails(wrong); !strings.Contains(out, "refused the credentials") || !strings.Contains(out, "WRONGPASS") {
		t.Errorf("wrong password: %s", out)
	}

	// on_auth_failure: local starts anyway, and says it is not connected.
	local := strings.Replace(wrong, "password: not-the-password", "password: not-the-password, on_auth_failure: local", 1)
	d := startDaemon(t, f.l.Router, map[string]string{"luafw.yaml": local, "fleet.lua": fleetPlugin})
	d.waitLog("refused this node", 5*time.Second)
	st := status(t, ctx, f.l.Router)
	if st.Backend == nil || st.Backend.Connected || st.Backend.Reason != "auth" || st.Backend.AuthErrors == 0 {
		t.Errorf("status with a wrong password: %+v", st.Backend)
	}
	d.stop()

	// auth: none against a Redis without a password: runs, with a warning.
	f.stopRedis()
	f.startRedisOpen(t)
	open := strings.Replace(base, "password: "+fleetPassword, "auth: none", 1)
	d = startDaemon(t, f.l.Router, map[string]string{"luafw.yaml": open, "fleet.lua": fleetPlugin})
	d.waitLog("Redis is used without credentials", 5*time.Second)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(fleetInterval) {
		if st := status(t, ctx, f.l.Router); st.Backend != nil && st.Backend.Connected {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("auth: none: never connected")
		}
	}
}

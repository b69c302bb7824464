package main

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/luafw/luafw/daemon"
	"github.com/luafw/luafw/daemon/control"
)

// fakeDaemon answers the control commands the way a daemon would, with
// canned results.
func fakeDaemon(t *testing.T, reloadErr error) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ctl.sock")
	srv, err := control.Listen(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv.Handle("reload", func(context.Context, json.RawMessage, func(any) error) (any, error) {
		if reloadErr != nil {
			return nil, reloadErr
		}
		return daemon.ReloadResult{Generation: 4, Plugins: 2, Callbacks: 3, Segments: 1}, nil
	})
	srv.Handle("status", func(context.Context, json.RawMessage, func(any) error) (any, error) {
		st := daemon.Status{Version: "v1", PID: 42, Config: "/etc/luafw/luafw.yaml", Generation: 4, Table: "luafw"}
		st.Plugins = []daemon.PluginStatus{{Name: "guard", Quarantined: true, Callbacks: []daemon.CallbackStatus{
			{Name: "guard", Hook: "input", Calls: 7, Errors: 2, Verdicts: map[string]uint64{"drop": 5, "accept": 2}}}}}
		st.Segments = []daemon.SegmentStatus{{Key: "input@1", After: "filter", Verdicts: map[string]uint64{"drop": 5},
			Sockets: []daemon.SocketStatus{{Queues: []uint16{1000}, Received: 7}}}}
		return st, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return path
}

func TestReloadCommand(t *testing.T) {
	ok := fakeDaemon(t, nil)
	code, out, errs := runCLI("reload", "--socket", ok)
	if code != 0 || out != "reloaded: generation 4, 2 plugins, 3 callbacks, 1 segments\n" {
		t.Fatalf("good reload: exit %d, %q %q", code, out, errs)
	}
	bad := fakeDaemon(t, errors.New("/etc/luafw/p.lua:3: syntax error"))
	code, out, errs = runCLI("reload", "--socket", bad)
	if code != 1 || out != "" || !strings.Contains(errs, "luafw reload: /etc/luafw/p.lua:3: syntax error") ||
		!strings.Contains(errs, "keeps running its previous configuration") {
		t.Fatalf("failed reload: exit %d, %q %q", code, out, errs)
	}
	code, _, errs = runCLI("reload", "--socket", filepath.Join(t.TempDir(), "none.sock"))
	if code != 3 || !strings.Contains(errs, "no luafw daemon answers") {
		t.Fatalf("no daemon: exit %d, %q", code, errs)
	}
	if code, _, _ := runCLI("reload", "extra"); code != 2 {
		t.Fatalf("stray argument: exit %d", code)
	}
}

func TestStatusCommand(t *testing.T) {
	path := fakeDaemon(t, nil)
	code, out, errs := runCLI("status", "--socket", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	flat := strings.Join(strings.Fields(out), " ")
	for _, want := range []string{"luafw v1, pid 42", "generation 4", "guard guard input 0 7 2 0 accept=2 drop=5 QUARANTINED",
		"input@1 filter 1000 7 0 0 drop=5"} {
		if !strings.Contains(flat, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	code, out, errs = runCLI("status", "--json", "--socket", path)
	var st daemon.Status
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Generation != 4 || st.Plugins[0].Callbacks[0].Errors != 2 {
		t.Fatalf("status --json: exit %d, %q %q", code, out, errs)
	}
}

func TestVersion(t *testing.T) {
	for _, arg := range []string{"version", "--version"} {
		code, out, _ := runCLI(arg)
		if code != 0 || !strings.HasPrefix(out, "luafw ") || len(strings.TrimSpace(out)) <= len("luafw ") {
			t.Errorf("%s: exit %d, %q", arg, code, out)
		}
	}
}

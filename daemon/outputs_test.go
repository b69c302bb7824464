package daemon

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/luafw/luafw/config"
	"github.com/luafw/luafw/host/state"
	"github.com/luafw/luafw/internal/engine"
)

func outputsDaemon(t *testing.T, stateFile string) (*Daemon, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	eng := engine.New(engine.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(eng.Close)
	d := &Daemon{log: log, eng: eng, cfg: &config.File{}}
	d.out.stateFile = stateFile
	return d, &logs
}

// TestStateFileRoundTrip: a save leaves only the state file (no temporary
// file), and a new daemon restores it.
func TestStateFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "state.json")
	d, _ := outputsDaemon(t, path)
	d.eng.State().Map("bans").Set("10.0.0.9", state.BoolValue(true), time.Hour)
	if err := d.saveState(); err != nil {
		t.Fatal(err)
	}
	if err := d.saveState(); err != nil { // over the old one
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 || ents[0].Name() != "state.json" {
		t.Fatalf("directory holds %v, want only state.json", ents)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	d2, logs := outputsDaemon(t, path)
	d2.restoreState()
	if _, ok := d2.eng.State().Map("bans").Get("10.0.0.9"); !ok {
		t.Fatalf("not restored; log:\n%s", logs)
	}
}

// TestStateFileUnusable: a file of a newer version is reported, moved
// aside and ignored.
func TestStateFileUnusable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	os.WriteFile(path, []byte(`{"format":"luafw-state","version":2,"maps":{}}`), 0o600)
	d, logs := outputsDaemon(t, path)
	d.restoreState()
	if !strings.Contains(logs.String(), "the saved state file is unusable") || !strings.Contains(logs.String(), "version 2") {
		t.Fatalf("log:\n%s", logs)
	}
	if _, err := os.Stat(path + ".corrupt"); err != nil {
		t.Fatal("not moved aside")
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatal("the unusable file is still in place")
	}
}

// TestReloadKeepsOutputs: events, capture and state settings are the
// ones the daemon started with until it restarts.
func TestReloadKeepsOutputs(t *testing.T) {
	d, logs := outputsDaemon(t, "")
	d.cfg.Events = &config.Events{File: "/var/log/a.json"}
	next := &config.File{Events: &config.Events{File: "/var/log/b.json"}, State: &config.State{File: "s.json"}}
	d.keepOutputs(next)
	if next.Events.File != "/var/log/a.json" || next.State != nil || !strings.Contains(logs.String(), "change only on restart") {
		t.Fatalf("after reload: events %+v state %+v; log %s", next.Events, next.State, logs)
	}
}

package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/luafw/luafw/daemon"
	"github.com/luafw/luafw/daemon/control"
	"github.com/luafw/luafw/host/state"
)

// stateDaemon serves the real state commands over a store the test fills.
func stateDaemon(t *testing.T) (string, *state.Store) {
	t.Helper()
	st := state.NewStore(nil, state.Limits{})
	path := filepath.Join(t.TempDir(), "ctl.sock")
	srv, err := control.Listen(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	daemon.HandleState(srv, st, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return path, st
}

func TestStateCommands(t *testing.T) {
	sock, st := stateDaemon(t)
	bans := st.Map("bans")
	bans.Set("10.0.1.2", state.BoolValue(true), time.Hour)
	bans.Set("10.0.1.3", state.NumberValue(5), 0)
	st.Counter("drops").Add(3)

	code, out, errs := runCLI("state", "list", "--socket", sock)
	if code != 0 || !strings.Contains(out, "map      bans   2") || !strings.Contains(out, "counter  drops  3") {
		t.Fatalf("list: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = runCLI("state", "show", "bans", "--socket", sock)
	if code != 0 || !strings.Contains(out, "10.0.1.2  true   boolean") || !strings.Contains(out, "10.0.1.3  5      number   never") {
		t.Fatalf("show: exit %d\n%s", code, out)
	}
	code, out, _ = runCLI("state", "show", "bans", "--json", "--socket", sock)
	var show daemon.StateShow
	if err := json.Unmarshal([]byte(out), &show); code != 0 || err != nil || len(show.Entries) != 2 || show.Entries[0].TTL <= 3500 {
		t.Fatalf("show --json: exit %d %v\n%s", code, err, out)
	}
	if code, out, _ = runCLI("state", "delete", "bans", "10.0.1.2", "--socket", sock); code != 0 || out != "deleted bans[10.0.1.2]\n" {
		t.Fatalf("delete: exit %d %q", code, out)
	}
	if _, ok := bans.Get("10.0.1.2"); ok {
		t.Fatal("the ban is still there")
	}
	if code, out, _ = runCLI("state", "delete", "bans", "10.0.1.2", "--socket", sock); code != 0 || out != "bans[10.0.1.2] was not set\n" {
		t.Fatalf("second delete: exit %d %q", code, out)
	}
	if code, _, errs = runCLI("state", "set", "--socket", sock, "bans", "10.0.9.9", "manual", "--ttl", "10m"); code != 0 {
		t.Fatalf("set: exit %d %s", code, errs)
	}
	if e, ok := bans.Lookup("10.0.9.9"); !ok || e.Value != state.StringValue("manual") || e.Expires.IsZero() {
		t.Fatalf("after set: %+v %v", e, ok)
	}
	if code, _, errs = runCLI("state", "set", "--socket", sock, "--", "score", "10.0.9.9", "-5"); code != 0 {
		t.Fatalf("set -- negative: exit %d %s", code, errs)
	}
	if v, ok := st.Map("score").Get("10.0.9.9"); !ok || v != state.NumberValue(-5) {
		t.Fatalf("score: %+v %v", v, ok)
	}
	if code, out, _ = runCLI("state", "get", "bans", "10.0.9.9", "--socket", sock); code != 0 || !strings.Contains(out, `"manual"  string`) {
		t.Fatalf("get: exit %d\n%s", code, out)
	}
	if code, _, errs = runCLI("state", "get", "bnas", "x", "--socket", sock); code != 1 || !strings.Contains(errs, `no state map "bnas" (maps: bans, score)`) {
		t.Fatalf("typo: exit %d %q", code, errs)
	}
	if code, out, _ = runCLI("state", "flush", "bans", "--socket", sock); code != 0 || out != "flushed bans: 2 keys deleted\n" || bans.Len() != 0 {
		t.Fatalf("flush: exit %d %q", code, out)
	}
	if code, _, _ = runCLI("state", "frobnicate", "--socket", sock); code != exitUsage {
		t.Fatalf("unknown subcommand: exit %d", code)
	}
}

// TestStateScopes: with cluster-scoped state beside the node-local store,
// list marks it, commands find a name in the one scope that has it, and a
// name in both needs --scope.
func TestStateScopes(t *testing.T) {
	local, cluster := state.NewStore(nil, state.Limits{}), state.NewStore(nil, state.Limits{})
	path := filepath.Join(t.TempDir(), "ctl.sock")
	srv, err := control.Listen(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	daemon.HandleState(srv, local, daemon.LocalScope(cluster), slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	cluster.Map("fleetbans").Set("10.0.0.1", state.BoolValue(true), 0)
	cluster.Map("both").Set("c", state.NumberValue(1), 0)
	local.Map("both").Set("l", state.NumberValue(2), 0)
	if _, err := cluster.Bucket("conns", 20, 5); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI("state", "list", "--socket", path)
	fields := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	if code != 0 || !strings.Contains(fields(out), "map fleetbans 1 cluster") || !strings.Contains(fields(out), "bucket conns 0 cluster, rate 20/s burst 5") {
		t.Fatalf("list: exit %d\n%s%s", code, out, errs)
	}
	if code, out, _ = runCLI("state", "delete", "fleetbans", "10.0.0.1", "--socket", path); code != 0 || out != "deleted fleetbans[10.0.0.1] (cluster: on every node)\n" {
		t.Fatalf("delete: exit %d %q", code, out)
	}
	if _, ok := cluster.Map("fleetbans").Get("10.0.0.1"); ok {
		t.Fatal("the cluster key is still there")
	}
	if code, _, errs = runCLI("state", "get", "both", "c", "--socket", path); code != 1 || !strings.Contains(errs, `state map "both" exists in both scopes: say --scope local or --scope cluster`) {
		t.Fatalf("ambiguous: exit %d %q", code, errs)
	}
	if code, out, _ = runCLI("state", "get", "both", "c", "--scope", "cluster", "--socket", path); code != 0 || !strings.Contains(fields(out), "c 1 number never") {
		t.Fatalf("--scope cluster: exit %d %q", code, out)
	}
	if code, _, errs = runCLI("state", "get", "nope", "x", "--socket", path); code != 1 || !strings.Contains(errs, "(maps: both, both (cluster), fleetbans (cluster))") {
		t.Fatalf("unknown: exit %d %q", code, errs)
	}
	if code, _, errs = runCLI("state", "set", "--scope", "cluster", "newmap", "k", "1", "--socket", path); code != 0 {
		t.Fatalf("set --scope cluster: exit %d %s", code, errs)
	}
	if _, ok := cluster.LookupMap("newmap"); !ok {
		t.Error("set --scope cluster did not create a cluster map")
	}
}

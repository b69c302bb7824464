package tests

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	luafwd "github.com/luafw/luafw/daemon"
)

// TestFleetOperatorLiftsBan: a source banned through router A (a
// cluster-scoped map) is seen by `luafw state` on router B, marked as
// cluster state; `luafw state delete` on B lifts the ban on both routers,
// A included, where the ban was written. `luafw status` shows the
// backend.
func TestFleetOperatorLiftsBan(t *testing.T) {
	needRedis(t)
	ctx := testCtx(t, 2*time.Minute)
	f := newFleet(t, ctx)
	serveTCP(t, f.l.Server, 8081, 2323)
	startDaemon(t, f.l.Router, fleetConfig("10.201.5.2:6379"))
	startDaemon(t, f.b, fleetConfig("10.201.6.2:6379"))
	time.Sleep(5 * fleetInterval)

	// until polls cond for up to 10 s.
	until := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(fleetInterval) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 10s", what)
			}
		}
	}
	if !dialFrom(ctx, f.l.Client, viaA+":8081", time.Second) {
		t.Fatal("before any ban: the source cannot connect through A")
	}
	dialFrom(ctx, f.l.Client, viaA+":2323", 300*time.Millisecond) // the honeypot bans it on A
	until("the ban made on A enforced on B", func() bool { return !dialFrom(ctx, f.l.Client, viaB+":8081", 300*time.Millisecond) })

	code, out, errs := luafwIn(t, ctx, f.b, "state", "list")
	if code != 0 || !strings.Contains(out, "bans") || !strings.Contains(out, "cluster") {
		t.Fatalf("state list on B: exit %d\n%s%s", code, out, errs)
	}
	t.Logf("luafw state list on B:\n%s", out)
	code, out, errs = luafwIn(t, ctx, f.b, "state", "get", "bans", fleetSrc, "--json")
	var e luafwd.StateEntry
	if code != 0 || json.Unmarshal([]byte(out), &e) != nil || e.Value != true {
		t.Fatalf("state get on B: exit %d\n%s%s", code, out, errs)
	}

	code, out, errs = luafwIn(t, ctx, f.b, "state", "delete", "bans", fleetSrc)
	if code != 0 || !strings.Contains(out, "deleted bans["+fleetSrc+"] (cluster: on every node)") {
		t.Fatalf("state delete on B: exit %d\n%s%s", code, out, errs)
	}
	lifted := time.Now()
	until("the ban lifted on A", func() bool { return dialFrom(ctx, f.l.Client, viaA+":8081", 300*time.Millisecond) })
	t.Logf("deleted on B: the source passes A again %v later", time.Since(lifted).Round(time.Millisecond))
	if out := status(t, ctx, f.l.Router); out.Backend != nil {
		t.Logf("A's pub/sub lag for the delete: %.3f s", out.Backend.LagSeconds)
	}
	if !dialFrom(ctx, f.l.Client, viaB+":8081", time.Second) {
		t.Error("the ban deleted on B still holds on B")
	}
	code, out, _ = luafwIn(t, ctx, f.l.Router, "state", "get", "bans", fleetSrc)
	if code == 0 {
		t.Errorf("A still holds the ban:\n%s", out)
	}

	st := status(t, ctx, f.l.Router)
	if st.Backend == nil || !st.Backend.Connected || st.Backend.LastSync == nil || st.Backend.LastSyncAge > 5 || st.Backend.LagSeconds <= 0 {
		t.Errorf("status backend on A: %+v", st.Backend)
	}
	code, out, _ = luafwIn(t, ctx, f.l.Router, "status")
	if code != 0 || !strings.Contains(out, "state backend redis: connected, last sync") {
		t.Errorf("luafw status on A: exit %d\n%s", code, out)
	}
}

package engine

import (
	"strings"
	"testing"

	"github.com/luafw/luafw/host/state"
)

func TestClusterScopeGoesToTheClusterState(t *testing.T) {
	shared := state.NewStore(nil, state.Limits{})
	e := New(Options{Cluster: localCluster{shared}})
	defer e.Close()
	mustLoad(t, e, src("ban", `
local bans = state.map("bans", {scope = "cluster"})
local mine = state.map("bans")
local seen = state.counter("seen", {scope = "cluster"})
local syn = state.bucket("syn", {rate = 1, burst = 1, scope = "cluster"})
fw.register{hook = "input", fn = function(pkt)
	seen:incr()
	if pkt.dport == 23 then bans:set(pkt.src, true) return fw.DROP end
	if bans:get(pkt.src) then return fw.DROP end
	if mine:get(pkt.src) then return fw.REJECT end
	if not syn:take(pkt.src) then return fw.DROP end
end}`))
	e.Process(&Packet{Hook: Input, Data: tcpPkt(t, "192.0.2.1", "10.0.0.2", 1, 23, 0)})
	if v, ok := shared.Map("bans").Get("192.0.2.1"); !ok || !v.Bool {
		t.Fatalf("ban not in the cluster state: %+v %v", v, ok)
	}
	if _, ok := e.State().Map("bans").Get("192.0.2.1"); ok {
		t.Fatal("cluster-scoped write landed in the node-local map of the same name")
	}
	// A ban another node wrote is obeyed.
	if err := shared.Map("bans").Set("198.51.100.1", state.BoolValue(true), 0); err != nil {
		t.Fatal(err)
	}
	if d := e.Process(&Packet{Hook: Input, Data: tcpPkt(t, "198.51.100.1", "10.0.0.2", 1, 80, 0)}); d.Verdict != Drop {
		t.Fatalf("banned source: %v", d.Verdict)
	}
	if got := shared.Counter("seen").Get(); got != 2 {
		t.Fatalf("cluster counter = %d, want 2", got)
	}
	if shared.Stats()["bucket:syn"] != 0 {
		t.Fatal("bucket used before any take")
	}
	e.Process(&Packet{Hook: Input, Data: tcpPkt(t, "203.0.113.5", "10.0.0.2", 1, 80, 0)})
	if shared.Stats()["bucket:syn"] != 1 {
		t.Fatal("cluster bucket not in the cluster state")
	}
}

func TestClusterScopeWithoutBackendIsNodeLocal(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e, src("two", `
local c = state.map("m", {scope = "cluster"})
local l = state.map("m", {scope = "local"})
c:set("k", 1)
l:set("k", 2)
fw.register{hook = "input", fn = function(pkt)
	if c:get("k") == 1 and l:get("k") == 2 then return fw.DROP end
end}`))
	if d := e.Process(&Packet{Hook: Input, Data: tcpPkt(t, "192.0.2.1", "10.0.0.2", 1, 2, 0)}); d.Verdict != Drop {
		t.Fatalf("cluster and local maps of one name are not distinct: %v", d.Verdict)
	}
}

func TestClusterScopeRefusesUnknownScopes(t *testing.T) {
	for _, code := range []string{
		`state.map("m", {scope = "global"})`,
		`state.counter("c", "cluster")`,
		`state.bucket("b", {rate = 1, burst = 1, scope = 1})`,
	} {
		e, _ := newTestEngine(t)
		err := e.Load([]PluginSpec{src("bad", code)})
		if err == nil || !strings.Contains(err.Error(), "bad.lua:1") {
			t.Errorf("%s: load error %v; want one naming bad.lua:1", code, err)
		}
	}
}

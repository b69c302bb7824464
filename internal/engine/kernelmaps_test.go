package engine

import (
	"strings"
	"testing"

	"github.com/luafw/luafw/host/state"
)

// state.map's kernel option is recorded per running plugin set, with the
// node's copy of the map; a map opened only in a callback does not count;
// other values are refused at load.
func TestKernelMaps(t *testing.T) {
	e, _ := newTestEngine(t)
	if got := e.KernelMaps(); len(got) != 0 {
		t.Fatalf("no plugins: %v", got)
	}
	mustLoad(t, e, src("ban", `
local bans = state.map("bans", {kernel = "drop"})
local fleet = state.map("bans", {scope = "cluster", kernel = "drop"})
local plain = state.map("plain")
fw.register{hook = "input", fn = function(pkt) bans:set(pkt.src, true, 60) end}`))
	got := e.KernelMaps()
	if len(got) != 2 || got[0].Name != "bans" || got[0].Cluster || !got[1].Cluster || got[0].Action != "drop" {
		t.Fatalf("KernelMaps: %+v", got)
	}
	if got[0].Map != e.State().Map("bans") || got[1].Map != e.LocalClusterState().Map("bans") || got[0].Map == got[1].Map {
		t.Error("KernelMaps: not the node's copies of the maps")
	}
	e.Process(&Packet{Hook: Input, Data: tcpPkt(t, "192.0.2.1", "10.0.0.2", 1, 23, 0)})
	if _, ok := got[0].Map.Lookup("192.0.2.1"); !ok {
		t.Error("the plugin's write is not in KernelMaps' map")
	}

	// Reloaded without the option: no longer mirrored.
	p, err := e.Prepare([]PluginSpec{src("ban", `local bans = state.map("bans")`)})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.KernelMaps(e); len(got) != 0 {
		t.Errorf("Prepared.KernelMaps: %+v", got)
	}
	e.Commit(p)
	if got := e.KernelMaps(); len(got) != 0 {
		t.Errorf("after the reload: %+v", got)
	}

	for _, code := range []string{
		`state.map("m", {kernel = "reject"})`,
		`state.map("m", {kernel = true})`,
	} {
		e, _ := newTestEngine(t)
		err := e.Load([]PluginSpec{src("bad", code)})
		if err == nil || !strings.Contains(err.Error(), "bad.lua:1") || !strings.Contains(err.Error(), "kernel") {
			t.Errorf("%s: load error %v; want one naming bad.lua:1 and the kernel option", code, err)
		}
	}
}

// A cluster backend's local copy is what is mirrored.
func TestKernelMapsClusterCopy(t *testing.T) {
	shared := state.NewStore(nil, state.Limits{})
	e := New(Options{Cluster: localCluster{shared}})
	defer e.Close()
	mustLoad(t, e, src("ban", `local bans = state.map("bans", {scope = "cluster", kernel = "drop"})`))
	if got := e.KernelMaps(); len(got) != 1 || got[0].Map != shared.Map("bans") {
		t.Fatalf("KernelMaps: %+v", got)
	}
}

package engine

import (
	"slices"
	"strings"

	"github.com/luafw/luafw/host/state"
)

// KernelMap is a state map that a plugin asked to have mirrored into the
// kernel with state.map's kernel option. The engine only records the
// request: a host with a kernel to mirror to (the daemon) does the
// mirroring; others (replay, `luafw test`, embedders) ignore it.
type KernelMap struct {
	// Name is the map's name; Cluster tells its scope.
	Name    string
	Cluster bool
	// Action is what the kernel does with a packet whose source address
	// is a key of the map: "drop".
	Action string
	// Map is the map's copy on this node, which the cluster (if any)
	// keeps in line with the fleet's: what a mirror observes.
	Map *state.Map
}

// markKernel records that the plugin asked for map k in the kernel.
func (sn *stateNames) markKernel(k stateKey) {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if sn.kernel == nil {
		sn.kernel = map[stateKey]struct{}{}
	}
	sn.kernel[k] = struct{}{}
}

// KernelMaps returns the maps the running plugins asked to have mirrored
// into the kernel, sorted by scope then name.
func (e *Engine) KernelMaps() []KernelMap { return e.kernelMaps(e.gen.Load().plugins) }

// KernelMaps is what Engine.KernelMaps will return once p runs.
func (p *Prepared) KernelMaps(e *Engine) []KernelMap { return e.kernelMaps(p.plugins) }

func (e *Engine) kernelMaps(plugins []*plugin) []KernelMap {
	seen := map[stateKey]bool{}
	var out []KernelMap
	for _, p := range plugins {
		p.state.mu.Lock()
		for k := range p.state.kernel {
			if seen[k] {
				continue
			}
			seen[k] = true
			out = append(out, KernelMap{Name: k.name, Cluster: k.cluster, Action: "drop", Map: e.localMap(k)})
		}
		p.state.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b KernelMap) int {
		if a.Cluster != b.Cluster {
			if a.Cluster {
				return 1
			}
			return -1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

// localMap is the node's copy of map k.
func (e *Engine) localMap(k stateKey) *state.Map {
	if !k.cluster {
		return e.store.Map(k.name)
	}
	switch c := e.cluster.(type) {
	case localCluster:
		return c.s.Map(k.name)
	case interface{ Local() *state.Store }:
		return c.Local().Map(k.name)
	}
	return nil
}

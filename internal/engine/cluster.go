package engine

import (
	lua "github.com/luafw/luafw/lua"

	"github.com/luafw/luafw/host/state"
)

// ClusterState holds the maps, counters and bucket families scripts ask
// for with {scope = "cluster"}: host/state/cluster's Store shares them
// across a fleet through Redis. Its methods must not block on the network.
type ClusterState interface {
	Map(name string) state.MapHandle
	Counter(name string) state.CounterHandle
	Bucket(name string, rate, burst float64) (state.BucketHandle, error)
}

// localCluster is the cluster of one node that cluster-scoped state lives
// in when no ClusterState is configured: a store of its own, so that the
// names of cluster-scoped objects never meet node-local ones, with or
// without a backend.
type localCluster struct{ s *state.Store }

func (c localCluster) Map(name string) state.MapHandle         { return c.s.Map(name) }
func (c localCluster) Counter(name string) state.CounterHandle { return c.s.Counter(name) }
func (c localCluster) Bucket(name string, rate, burst float64) (state.BucketHandle, error) {
	return c.s.Bucket(name, rate, burst)
}
func (c localCluster) Sweep() { c.s.Sweep() }

// LocalClusterState returns the store cluster-scoped state lives in when
// no ClusterState was configured, nil when one was.
func (e *Engine) LocalClusterState() *state.Store {
	if c, ok := e.cluster.(localCluster); ok {
		return c.s
	}
	return nil
}

// clusterScope reads the scope field of the options table at argument n
// (absent or nil: node-local) and reports whether it asks for the cluster.
func clusterScope(L *lua.LState, n int) bool {
	opts, ok := L.Get(n).(*lua.LTable)
	if !ok {
		if L.Get(n) != lua.LNil {
			L.ArgError(n, "want an options table")
		}
		return false
	}
	switch s := opts.RawGetString("scope"); s {
	case lua.LNil, lua.LString("local"):
		return false
	case lua.LString("cluster"):
		return true
	default:
		L.ArgError(n, `scope is "local" (default) or "cluster"`)
	}
	return false
}

// kernelOption reads the kernel field of the options table at argument n
// (state.map's): absent or nil, or "drop", which it reports.
func kernelOption(L *lua.LState, n int) bool {
	opts, ok := L.Get(n).(*lua.LTable)
	if !ok {
		return false
	}
	switch k := opts.RawGetString("kernel"); k {
	case lua.LNil:
		return false
	case lua.LString("drop"):
		return true
	default:
		L.ArgError(n, `kernel is "drop" (or absent)`)
	}
	return false
}

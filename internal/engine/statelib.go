package engine

import (
	"fmt"
	"time"

	lua "github.com/luafw/luafw/lua"

	"github.com/luafw/luafw/host/state"
)

// The state module: state.map, state.counter and state.bucket, views of the
// engine's shared store (host/state).

const (
	stateMapType     = "luafw.state.map"
	stateCounterType = "luafw.state.counter"
	stateBucketType  = "luafw.state.bucket"
)

var stateFuncs = map[string]lua.LGFunction{
	"map":     stateMap,
	"counter": stateCounter,
	"bucket":  stateBucket,
}

var stateMapMethods = map[string]lua.LGFunction{
	"get":    mapGet,
	"set":    mapSet,
	"incr":   mapIncr,
	"delete": mapDelete,
	"len":    mapLen,
}

var stateCounterMethods = map[string]lua.LGFunction{
	"incr": counterIncr,
	"get":  counterGet,
}

var stateBucketMethods = map[string]lua.LGFunction{
	"take": bucketTake,
}

// openState builds the state table of ps.
func openState(ps *pluginState) *lua.LTable {
	L := ps.L
	openType(L, stateMapType, stateMapMethods)
	openType(L, stateCounterType, stateCounterMethods)
	openType(L, stateBucketType, stateBucketMethods)
	return L.SetFuncs(L.NewTable(), stateFuncs, ps.self)
}

// stateMap is state.map(name [, {scope =, kernel =}]).
func stateMap(L *lua.LState) int {
	ps := stateOf(L)
	name, cluster := L.CheckString(1), clusterScope(L, 2)
	k := stateKey{'m', cluster, name}
	ps.openStateObject(L, k)
	if kernelOption(L, 2) && ps.loading {
		ps.p.state.markKernel(k)
	}
	if cluster {
		return pushUD(L, ps.e.cluster.Map(name), stateMapType)
	}
	return pushUD(L, ps.e.store.Map(name), stateMapType)
}

// stateCounter is state.counter(name [, {scope =}]).
func stateCounter(L *lua.LState) int {
	ps := stateOf(L)
	name, cluster := L.CheckString(1), clusterScope(L, 2)
	ps.openStateObject(L, stateKey{'c', cluster, name})
	if cluster {
		return pushUD(L, ps.e.cluster.Counter(name), stateCounterType)
	}
	return pushUD(L, ps.e.store.Counter(name), stateCounterType)
}

// stateBucket is state.bucket(name, {rate=, burst= [, scope=]}).
func stateBucket(L *lua.LState) int {
	ps := stateOf(L)
	name := L.CheckString(1)
	opts := L.CheckTable(2)
	rate, ok1 := opts.RawGetString("rate").(lua.LNumber)
	burst, ok2 := opts.RawGetString("burst").(lua.LNumber)
	if !ok1 || !ok2 {
		L.ArgError(2, "want {rate = tokens per second, burst = bucket size}")
	}
	cluster := clusterScope(L, 2)
	ps.openStateObject(L, stateKey{'b', cluster, name})
	var b state.BucketHandle
	var err error
	if cluster {
		b, err = ps.e.cluster.Bucket(name, float64(rate), float64(burst))
	} else {
		b, err = ps.e.store.Bucket(name, float64(rate), float64(burst))
	}
	if err != nil {
		L.RaiseError("state.bucket: %v", err)
	}
	return pushUD(L, b, stateBucketType)
}

func mapGet(L *lua.LState) int {
	v, ok := checkMap(L).Get(L.CheckString(2))
	if !ok {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(fromValue(v))
	return 1
}

func mapSet(L *lua.LState) int {
	return pushResult(L, checkMap(L).Set(L.CheckString(2), toValue(L, 3), optSeconds(L, 4)))
}

func mapIncr(L *lua.LState) int {
	n, err := checkMap(L).Incr(L.CheckString(2), float64(L.OptNumber(3, 1)), float64(L.OptNumber(5, 0)), optSeconds(L, 4))
	if err != nil {
		L.RaiseError("state map incr: %v", err)
	}
	L.Push(lua.LNumber(n))
	return 1
}

func mapDelete(L *lua.LState) int {
	checkMap(L).Delete(L.CheckString(2))
	return 0
}

func mapLen(L *lua.LState) int {
	L.Push(lua.LNumber(checkMap(L).Len()))
	return 1
}

func counterIncr(L *lua.LState) int {
	L.Push(lua.LNumber(checkUD[state.CounterHandle](L, "state counter").Add(int64(L.OptInt64(2, 1)))))
	return 1
}

func counterGet(L *lua.LState) int {
	L.Push(lua.LNumber(checkUD[state.CounterHandle](L, "state counter").Get()))
	return 1
}

func bucketTake(L *lua.LState) int {
	b := checkUD[state.BucketHandle](L, "state bucket")
	L.Push(lua.LBool(b.TakeN(L.CheckString(2), float64(L.OptNumber(3, 1)))))
	return 1
}

func checkMap(L *lua.LState) state.MapHandle { return checkUD[state.MapHandle](L, "state map") }
func optSeconds(L *lua.LState, n int) time.Duration {
	return time.Duration(float64(L.OptNumber(n, 0)) * float64(time.Second))
}

func toValue(L *lua.LState, n int) state.Value {
	switch v := L.Get(n).(type) {
	case lua.LNumber:
		return state.Value{Kind: state.Number, Num: float64(v)}
	case lua.LString:
		return state.Value{Kind: state.String, Str: string(v)}
	case lua.LBool:
		return state.Value{Kind: state.Bool, Bool: bool(v)}
	case *lua.LNilType:
		return state.Value{}
	default:
		L.ArgError(n, fmt.Sprintf("state values are numbers, strings or booleans, not %s", v.Type()))
	}
	return state.Value{}
}

func fromValue(v state.Value) lua.LValue {
	switch v.Kind {
	case state.Number:
		return lua.LNumber(v.Num)
	case state.String:
		return lua.LString(v.Str)
	case state.Bool:
		return lua.LBool(v.Bool)
	}
	return lua.LNil
}

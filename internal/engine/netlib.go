package engine

import (
	"fmt"
	"net/netip"

	lua "github.com/luafw/luafw/lua"

	"github.com/luafw/luafw/host/netset"
)

// The net module: address sets (net.cidr, net.set, net.load), domain sets
// (net.domains, in netlib_domains.go) and net.ip. The functions that build
// sets from lists or files work only while the plugin loads: per packet they
// would cost the budget's worth of time and memory in one Go call.

const netsetType = "luafw.netset"

var netFuncs = map[string]lua.LGFunction{
	"cidr":    netCidr,
	"set":     netSet,
	"load":    netLoad,
	"domains": netDomains,
	"ip":      netIP,
}

var netsetMethods = map[string]lua.LGFunction{
	"contains": netsetContains,
	"size":     netsetSize,
}

// openNet builds the net table of ps.
func openNet(ps *pluginState) *lua.LTable {
	L := ps.L
	openType(L, netsetType, netsetMethods)
	openType(L, domainsType, domainsMethods)
	return L.SetFuncs(L.NewTable(), netFuncs, ps.self)
}

// loadTimeOnly raises an error naming fn unless the plugin is loading (its
// top level runs).
func loadTimeOnly(L *lua.LState, fn string) {
	if !stateOf(L).loading {
		L.RaiseError("%s can only be called while the plugin loads (at its top level)", fn)
	}
}

// pushSet returns s to the script as a net set.
func pushSet(L *lua.LState, s *netset.Set) int { return pushUD(L, s, netsetType) }

// netCidr is net.cidr(prefix): a set of one prefix or address.
func netCidr(L *lua.LState) int {
	arg := L.CheckString(1)
	s, err := netset.Parse([]string{arg})
	if err != nil {
		L.ArgError(1, err.Error())
	}
	return pushSet(L, s)
}

// netSet is net.set{prefix, ...}. Only while the plugin loads.
func netSet(L *lua.LState) int {
	loadTimeOnly(L, "net.set")
	t := L.CheckTable(1)
	entries := make([]string, 0, t.Len())
	t.ForEach(func(_, v lua.LValue) { entries = append(entries, lua.LVAsString(v)) })
	s, err := netset.Parse(entries)
	if err != nil {
		L.ArgError(1, err.Error())
	}
	return pushSet(L, s)
}

// netLoad is net.load(file): a set read from a CIDR list file. Only while
// the plugin loads.
func netLoad(L *lua.LState) int {
	loadTimeOnly(L, "net.load")
	check := func() error {
		if ctx := L.Context(); ctx != nil && ctx.Err() != nil {
			return &loadCut{reason: "reading the list stopped: " + cutReason(ctx, nil, "the top level", loadBudget)}
		}
		return nil
	}
	s, err := stateOf(L).p.loadSet(L.CheckString(1), check)
	if err != nil {
		L.RaiseError("net.load: %v", err)
	}
	return pushSet(L, s)
}

// netIP is net.ip(s): the address in canonical form, or nil.
func netIP(L *lua.LState) int {
	a, err := netip.ParseAddr(L.CheckString(1))
	if err != nil {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(lua.LString(a.Unmap().String()))
	return 1
}

func netsetContains(L *lua.LState) int {
	s := checkSet(L)
	L.Push(lua.LBool(s.Contains(checkAddr(L, 2))))
	return 1
}

func netsetSize(L *lua.LState) int {
	L.Push(lua.LNumber(checkSet(L).Len()))
	return 1
}

func checkSet(L *lua.LState) *netset.Set { return checkUD[*netset.Set](L, "net set") }

// checkAddr reads an address argument: a string, or the packet itself is
// not accepted (use pkt.src).
func checkAddr(L *lua.LState, n int) netip.Addr {
	s := L.CheckString(n)
	a, err := netip.ParseAddr(s)
	if err != nil {
		L.ArgError(n, fmt.Sprintf("not an IP address: %q", s))
	}
	return a
}

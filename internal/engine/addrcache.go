package engine

import (
	"net/netip"

	lua "github.com/luafw/luafw/lua"
)

// addrCacheSize bounds a worker's cache of address strings. A flow's
// packets repeat their addresses, so a small cache serves most reads; when
// it fills up it starts over, which keeps it O(1) and bounded.
const addrCacheSize = 4096

// addrCache maps addresses to their text as Lua values, so that reading
// pkt.src or pkt.dst formats and boxes an address once per worker rather
// than once per packet (two allocations each time). One per worker; not
// safe for concurrent use.
type addrCache map[netip.Addr]lua.LValue

// value returns a's text as a Lua string, nil for an invalid address.
func (c *addrCache) value(a netip.Addr) lua.LValue {
	if !a.IsValid() {
		return lua.LNil
	}
	if v, ok := (*c)[a]; ok {
		return v
	}
	if *c == nil || len(*c) >= addrCacheSize {
		*c = make(addrCache, 64)
	}
	v := lua.LValue(lua.LString(a.String()))
	(*c)[a] = v
	return v
}

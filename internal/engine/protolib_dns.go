package engine

import (
	"net/netip"

	lua "github.com/luafw/luafw/lua"

	"github.com/luafw/luafw/host/dnsmsg"
)

// dnsAnswer is dns.answer(query, {a = "0.0.0.0", aaaa = "::", ttl = 60,
// nxdomain = false}): the response to the DNS query payload query that a
// sinkhole gives (see dnsmsg.AppendAnswer), or nil and a reason.
func dnsAnswer(L *lua.LState) int {
	q := L.CheckString(1)
	opts := L.OptTable(2, L.NewTable())
	var s dnsmsg.Sinkhole
	s.TTL = uint32(checkOptInt(L, opts, "ttl", 60, 0, 1<<31-1))
	s.NXDomain = lua.LVAsBool(opts.RawGetString("nxdomain"))
	for _, f := range []struct {
		key string
		dst *netip.Addr
		v4  bool
	}{{"a", &s.A, true}, {"aaaa", &s.AAAA, false}} {
		v := opts.RawGetString(f.key)
		if v == lua.LNil {
			continue
		}
		a, err := netip.ParseAddr(v.String())
		if err != nil || a.Is4() != f.v4 {
			L.ArgError(2, f.key+" must be an IPv"+map[bool]string{true: "4", false: "6"}[f.v4]+" address, not "+v.String())
		}
		*f.dst = a
	}
	r, err := dnsmsg.AppendAnswer(nil, []byte(q), s)
	if err != nil {
		L.Push(lua.LNil)
		L.Push(lua.LString(err.(*dnsmsg.Error).Reason))
		return 2
	}
	L.Push(lua.LString(r))
	return 1
}

// checkOptInt reads an optional integer field of an options table.
func checkOptInt(L *lua.LState, t *lua.LTable, key string, def, lo, hi int) int {
	v := t.RawGetString(key)
	if v == lua.LNil {
		return def
	}
	n, ok := v.(lua.LNumber)
	if !ok || float64(n) != float64(int(n)) || int(n) < lo || int(n) > hi {
		L.RaiseError("%s must be an integer %d..%d, not %s", key, lo, hi, v.String())
	}
	return int(n)
}

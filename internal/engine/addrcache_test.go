package engine

import (
	"net/netip"
	"testing"

	lua "github.com/luafw/luafw/lua"
)

func TestAddrCache(t *testing.T) {
	var c addrCache
	if v := c.value(netip.Addr{}); v != lua.LNil {
		t.Fatalf("invalid address: %v, want nil", v)
	}
	for i := 0; i < 3*addrCacheSize; i++ {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if v := c.value(a); v.String() != a.String() {
			t.Fatalf("%v read back as %v", a, v)
		}
		if len(c) > addrCacheSize {
			t.Fatalf("cache grew to %d entries", len(c))
		}
	}
	a := netip.MustParseAddr("2001:db8::1")
	if c.value(a) != c.value(a) || c.value(a).String() != "2001:db8::1" {
		t.Fatal("IPv6 address not cached as its text")
	}
}

// TestFieldReadsDoNotAllocate: reading the packet view's fields (numbers,
// names, nested views, addresses already seen) allocates nothing, and the
// rewritten field reads behave as Lua's: nil for absent table keys, the
// __index of tables and userdata, errors on indexing non-tables.
func TestFieldReadsDoNotAllocate(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e, src("v", `
local t = setmetatable({a = 1}, {__index = function(_, k) return k .. "!" end})
assert(t.a == 1 and t.b == "b!" and ({}).x == nil and string.format("%d", 3) == "3")
assert(not pcall(function() local n = 5; return n.x end))
fw.register{hook="forward", fn=function(pkt)
	local x = pkt.proto, pkt.dport, pkt.sport, pkt.tcp.syn, pkt.ct.state, pkt.src, pkt.dst, pkt.hook, pkt.len
	if pkt.dport ~= 443 then return fw.DROP end
end}`))
	w := e.NewWorker()
	defer w.Close()
	p := &Packet{Hook: Forward, CTState: CTEstablished, Data: tcpPkt(t, "10.1.2.3", "10.9.8.7", 40000, 443, 0x10)}
	if d := w.Run(p); d.Verdict != Accept || d.Errors != 0 {
		t.Fatalf("decision %+v", d)
	}
	if n := testing.AllocsPerRun(200, func() { w.Run(p) }); n != 0 {
		t.Errorf("%v allocations per packet", n)
	}
}

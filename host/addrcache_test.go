package host

import (
	"net/netip"
	"testing"

	lua "github.com/yuin/gopher-lua"
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

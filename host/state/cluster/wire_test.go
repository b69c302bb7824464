package cluster

import (
	"math"
	"testing"

	"github.com/luafw/luafw/host/state"
)

func TestValueEncodingRoundTrips(t *testing.T) {
	for _, v := range []state.Value{
		state.NumberValue(0), state.NumberValue(-1.5), state.NumberValue(1e300), state.NumberValue(math.Inf(1)),
		state.StringValue(""), state.StringValue("s:x"), state.StringValue("12"),
		state.BoolValue(true), state.BoolValue(false),
	} {
		got, ok := decodeValue(encodeValue(v))
		if !ok || got != v {
			t.Errorf("%+v: decoded as %+v, %v", v, got, ok)
		}
	}
	for _, s := range []string{"", "b:2", "x", "1.2.3"} {
		if v, ok := decodeValue(s); ok {
			t.Errorf("decodeValue(%q) = %+v; want refusal", s, v)
		}
	}
}

func TestMapKeyPrefixesDoNotOverlap(t *testing.T) {
	a, b := mapKeyPrefix("p:", "a"), mapKeyPrefix("p:", "a:b")
	if len(b) >= len(a) && b[:len(a)] == a {
		t.Errorf("map a's prefix %q is a prefix of map a:b's %q", a, b)
	}
	if got := globEscape(`a*b?[c]\`); got != `a\*b\?\[c\]\\` {
		t.Errorf("globEscape = %q", got)
	}
}

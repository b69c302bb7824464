package cluster

import (
	"encoding/json"
	"math"
	"strings"
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

func TestOwnMessagesAreRecognised(t *testing.T) {
	self := selfPrefix(`gw"1`)
	// Only messages with something in them are published.
	for _, msg := range []message{{Node: `gw"1`, Maps: []mapOp{{Kind: opDelete}}}, {Node: `gw"1`, Charges: []charge{{Bucket: "b", Key: "k", N: 1}}}} {
		b, _ := json.Marshal(msg)
		if !strings.HasPrefix(string(b), self) {
			t.Errorf("%s does not start with %s", b, self)
		}
	}
	b, _ := json.Marshal(message{Node: `gw"10`, Maps: []mapOp{{Kind: opSet}}})
	if strings.HasPrefix(string(b), self) {
		t.Errorf("another node's message %s starts with %s", b, self)
	}
}

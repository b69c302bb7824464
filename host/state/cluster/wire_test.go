package cluster

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

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
	for _, msg := range []message{{Node: `gw"1`, Charges: []charge{{Bucket: "b", Key: "k", N: 1}}}} {
		b, _ := json.Marshal(msg)
		if !strings.HasPrefix(string(b), self) {
			t.Errorf("%s does not start with %s", b, self)
		}
	}
	b, _ := json.Marshal(message{Node: `gw"10`, Charges: []charge{{Bucket: "b", Key: "k", N: 1}}})
	if strings.HasPrefix(string(b), self) {
		t.Errorf("another node's message %s starts with %s", b, self)
	}
}

func TestMapMessagesParse(t *testing.T) {
	msg, err := parseMapMsg("3:ban1:71:8" + "1:s3:a:b3:b:116:17335000000000011:72:-1" + "1:d0:0:2:991:0" + "6:360000")
	if err != nil {
		t.Fatal(err)
	}
	want := mapMsg{name: "ban", first: 7, last: 8, entries: []entryMsg{
		{key: "a:b", val: "b:1", ver: version{1733500000000001, 7}, ttl: -1},
		{del: true, key: "", ver: version{99, 0}, ttl: 360000},
	}}
	if msg.name != want.name || msg.first != want.first || msg.last != want.last || len(msg.entries) != 2 ||
		msg.entries[0] != want.entries[0] || msg.entries[1] != want.entries[1] {
		t.Errorf("parsed %+v\nwant   %+v", msg, want)
	}
	for _, bad := range []string{"", "3:ban", "3:ban1:91:8", "3:ban1:71:81:x", "99999999999:x", "3:ban1:11:11:s0:0:1:x1:11:1"} {
		if _, err := parseMapMsg(bad); err == nil {
			t.Errorf("parseMapMsg(%q) accepted", bad)
		}
	}
}

func TestVersionsOrder(t *testing.T) {
	a, b := version{10, 2}, version{10, 3}
	if !b.newer(a) || a.newer(b) || a.newer(a) || !(version{11, 0}).newer(b) {
		t.Error("version order is not (clock, node)")
	}
	c := hlc{wall: func() time.Time { return time.Unix(100, 0) }}
	first := c.now()
	if c.now() <= first {
		t.Error("the clock did not move past its last reading")
	}
	c.observe(first + 1000)
	if c.now() <= first+1000 {
		t.Error("the clock did not move past an observed version")
	}
	c.observe(time.Unix(100, 0).Add(2 * maxSkew).UnixMicro())
	if c.now() > time.Unix(100, 0).Add(maxSkew).UnixMicro() {
		t.Error("a version far in the future dragged the clock along")
	}
}

// FuzzParseMapMsg: whatever a peer with credentials publishes, parsing
// it fails or succeeds, never panics, and what it returns is consistent.
func FuzzParseMapMsg(f *testing.F) {
	f.Add("3:ban1:71:81:s3:a:b3:b:116:17335000000000011:72:-1")
	f.Add("0:1:11:1")
	f.Add("99999999999:x")
	f.Fuzz(func(t *testing.T, p string) {
		m, err := parseMapMsg(p)
		if err == nil && m.first > m.last {
			t.Errorf("accepted first %d > last %d", m.first, m.last)
		}
	})
}

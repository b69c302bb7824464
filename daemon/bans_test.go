package daemon

import (
	"net/netip"
	"testing"
)

func TestBanKey(t *testing.T) {
	for key, want := range map[string]string{
		"192.0.2.9":        "192.0.2.9/32",
		"2001:db8::9":      "2001:db8::9/128",
		"198.51.100.0/24":  "198.51.100.0/24",
		"2001:db8:1::/48":  "2001:db8:1::/48",
		"::ffff:192.0.2.9": "::ffff:192.0.2.9/128",
		"2001:DB8::9":      "", // not canonical
		"10.0.0.1/8":       "", // host bits
		"192.0.2.9/32":     "", // an address is written as one
		"fe80::1%eth0":     "", // zone
		"host.example":     "",
		"":                 "",
	} {
		p, ok := banKey(key)
		if got := map[bool]string{true: p.String(), false: ""}[ok]; got != want {
			t.Errorf("banKey(%q) = %q, want %q", key, got, want)
		}
	}
}

func TestBanViewOverlaps(t *testing.T) {
	v := newBanView()
	pf := netip.MustParsePrefix
	v.put(pf("10.0.0.0/8"), 0)
	v.put(pf("192.0.2.0/24"), 100) // expires at 100
	v.put(pf("2001:db8::/32"), 0)
	v.put(pf("10.1.2.3/32"), 0) // an address: its own set
	for _, c := range []struct {
		p    string
		now  int64
		want bool
	}{
		{"10.1.0.0/16", 0, true},    // inside 10/8
		{"0.0.0.0/0", 0, true},      // around everything
		{"11.0.0.0/8", 0, false},    // beside
		{"10.0.0.0/8", 0, false},    // itself: a re-set, not an overlap
		{"192.0.2.128/25", 0, true}, // inside a live /24
		{"2001:db8:1::/48", 0, true},
		{"2001:db9::/32", 0, false},
		{"10.9.9.9/32", 0, false},     // addresses never overlap
		{"192.0.2.0/25", 200, false},  // the /24 expired: forgotten on the way
		{"192.0.0.0/16", 200, false},  // and no longer counted inside
		{"10.0.0.0/7", 200, true},     // contains 10/8
		{"2001:db8::/31", 200, true},  // contains the /32
		{"2001:db8::/33", 200, true},  // inside it
		{"172.16.0.0/12", 200, false}, // unrelated
	} {
		if got := v.overlaps(pf(c.p), c.now); got != c.want {
			t.Errorf("overlaps(%s, now %d) = %v, want %v", c.p, c.now, got, c.want)
		}
	}
	v.drop(pf("10.0.0.0/8"))
	if v.overlaps(pf("10.1.0.0/16"), 0) || v.overlaps(pf("0.0.0.0/0"), 300) {
		t.Error("a dropped prefix still overlaps")
	}
	v.drop(pf("2001:db8::/32"))
	v.drop(pf("10.1.2.3/32"))
	v.prune(300)
	if len(v.exp) != 0 || len(v.nets) != 0 || len(v.inner) != 0 {
		t.Errorf("after dropping everything: %d elements, %d prefixes, %d counts", len(v.exp), len(v.nets), len(v.inner))
	}
}

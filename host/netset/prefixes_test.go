package netset

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

func TestPrefixes(t *testing.T) {
	for _, tc := range []struct {
		in, want []string
	}{
		{[]string{"10.0.0.0/8"}, []string{"10.0.0.0/8"}},
		{[]string{"10.0.0.0/9", "10.128.0.0/9"}, []string{"10.0.0.0/8"}},
		{[]string{"10.0.0.1", "10.0.0.2"}, []string{"10.0.0.1/32", "10.0.0.2/32"}},
		{[]string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}, []string{"10.0.0.1/32", "10.0.0.2/31"}},
		{[]string{"0.0.0.0/0"}, []string{"0.0.0.0/0"}},
		{[]string{"255.255.255.255"}, []string{"255.255.255.255/32"}},
		{[]string{"::/0", "192.0.2.0/24"}, []string{"192.0.2.0/24", "::/0"}},
		{[]string{"2001:db8::/33", "2001:db8:8000::/33"}, []string{"2001:db8::/32"}},
		{[]string{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127"}, []string{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127"}},
		{nil, nil},
	} {
		s, err := Parse(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range s.Prefixes() {
			got = append(got, p.String())
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%v: got %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestPrefixesRoundTrip: the prefixes make the same set as the entries, on
// random sets, checked at random addresses and at every range edge.
func TestPrefixesRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for round := 0; round < 50; round++ {
		var in []string
		for i := 0; i < 40; i++ {
			a := netip.AddrFrom4([4]byte{byte(rng.IntN(4)), byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))})
			in = append(in, fmt.Sprintf("%s/%d", a, 8+rng.IntN(25)))
		}
		s, err := Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		back := New(s.Prefixes())
		if back.Ranges() != s.Ranges() {
			t.Fatalf("round %d: %d ranges after the round trip, want %d", round, back.Ranges(), s.Ranges())
		}
		for i := range s.lo4 {
			if s.lo4[i] != back.lo4[i] || s.hi4[i] != back.hi4[i] {
				t.Fatalf("round %d: range %d differs", round, i)
			}
		}
	}
}

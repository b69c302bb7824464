package netset

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

func mustParse(t testing.TB, entries ...string) *Set {
	t.Helper()
	s, err := Parse(entries)
	if err != nil {
		t.Fatalf("Parse(%q): %v", entries, err)
	}
	return s
}

func check(t *testing.T, s *Set, in []string, out []string) {
	t.Helper()
	for _, a := range in {
		if !s.Contains(netip.MustParseAddr(a)) {
			t.Errorf("Contains(%s) = false, want true", a)
		}
	}
	for _, a := range out {
		if s.Contains(netip.MustParseAddr(a)) {
			t.Errorf("Contains(%s) = true, want false", a)
		}
	}
}

func TestEdgesIPv4(t *testing.T) {
	s := mustParse(t, "10.0.0.0/8", "192.168.1.0/24", "203.0.113.7")
	check(t, s,
		[]string{"10.0.0.0", "10.255.255.255", "10.1.2.3", "192.168.1.0", "192.168.1.255", "203.0.113.7"},
		[]string{"9.255.255.255", "11.0.0.0", "192.168.0.255", "192.168.2.0", "203.0.113.6", "203.0.113.8", "0.0.0.0", "255.255.255.255"},
	)
	if s.Len() != 3 || s.Ranges() != 3 {
		t.Errorf("Len, Ranges = %d, %d; want 3, 3", s.Len(), s.Ranges())
	}
}

func TestOverlapAndNesting(t *testing.T) {
	s := mustParse(t,
		"10.0.0.0/8", "10.1.0.0/16", "10.1.2.3", // nested in 10/8
		"172.16.0.0/13", "172.20.0.0/14", // overlap: 172.16-23 and 172.20-23
		"192.0.2.0/25", "192.0.2.128/25", // adjacent: merge to one /24
		"198.51.100.0/24", "198.51.100.0/24", // duplicate
	)
	if got, want := s.Len(), 9; got != want {
		t.Errorf("Len = %d, want %d", got, want)
	}
	if got, want := s.Ranges(), 4; got != want {
		t.Errorf("Ranges = %d, want %d", got, want)
	}
	check(t, s,
		[]string{"10.255.255.255", "172.16.0.0", "172.23.255.255", "192.0.2.0", "192.0.2.127", "192.0.2.128", "192.0.2.255", "198.51.100.42"},
		[]string{"172.15.255.255", "172.24.0.0", "192.0.1.255", "192.0.3.0", "198.51.101.0"},
	)
}

func TestWholeSpaceAndHosts(t *testing.T) {
	all4 := mustParse(t, "0.0.0.0/0")
	check(t, all4, []string{"0.0.0.0", "255.255.255.255", "1.2.3.4", "::ffff:1.2.3.4"}, []string{"::", "::1", "2001:db8::1"})

	all6 := mustParse(t, "::/0")
	check(t, all6, []string{"::", "::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db8::1"}, []string{"0.0.0.0", "1.2.3.4", "::ffff:1.2.3.4"})

	host := mustParse(t, "255.255.255.255/32", "0.0.0.0/32", "::/128", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128")
	check(t, host,
		[]string{"255.255.255.255", "0.0.0.0", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
		[]string{"255.255.255.254", "0.0.0.1", "::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"},
	)
	// Ranges touching the top of the space must not wrap when merged.
	top := mustParse(t, "255.255.255.0/24", "255.255.255.255", "ffff::/16", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
	if top.Ranges() != 2 {
		t.Errorf("Ranges = %d, want 2", top.Ranges())
	}
	check(t, top, []string{"255.255.255.255", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}, []string{"255.255.254.255", "fffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff"})
}

func TestIPv6(t *testing.T) {
	s := mustParse(t,
		"2001:db8::/32",
		"2001:db8:1::/48", // nested
		"fe80::/64",
		"fd00::/8", "fd80::/9", // fd80::/9 nested in fd00::/8
		"2001:db9::/33", "2001:db9:8000::/33", // adjacent -> 2001:db9::/32, adjacent to 2001:db8::/32
		"::1",
		"2a00::1:0:0:0:0/65", // crosses the 64-bit word boundary
	)
	check(t, s,
		[]string{
			"2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
			"fe80::", "fe80::ffff:ffff:ffff:ffff",
			"fd00::", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
			"2001:db9::", "2001:db9:ffff:ffff:ffff:ffff:ffff:ffff",
			"::1",
			"2a00:0:0:1::", "2a00:0:0:1:7fff:ffff:ffff:ffff",
		},
		[]string{
			"2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", "2001:dba::",
			"fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fe80:0:0:1::",
			"fcff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fe00::",
			"::", "::2",
			"2a00:0:0:0:ffff:ffff:ffff:ffff", "2a00:0:0:1:8000::",
		},
	)
	// ::1, 2001:db8::-2001:db9:ffff:..., 2a00:0:0:1::/65, fd00::/8, fe80::/64.
	if got, want := s.Ranges(), 5; got != want {
		t.Errorf("Ranges = %d, want %d", got, want)
	}
	// Zones are ignored on lookup.
	if !s.Contains(netip.MustParseAddr("fe80::1%eth0")) {
		t.Error("Contains(fe80::1 with zone eth0) = false, want true")
	}
}

func TestMixedAndMapped(t *testing.T) {
	s := mustParse(t, "10.0.0.0/8", "::ffff:192.0.2.0/120", "::ffff:198.51.100.1", "2001:db8::/32")
	check(t, s,
		[]string{"10.1.1.1", "::ffff:10.1.1.1", "192.0.2.1", "::ffff:192.0.2.255", "198.51.100.1", "2001:db8::5"},
		[]string{"11.0.0.0", "192.0.3.0", "198.51.100.2", "::a01:101", "2001:db9::"},
	)
	// The mapped entries were stored as IPv4: three v4 ranges and one v6 range.
	if len(s.lo4) != 3 || len(s.lo6) != 1 {
		t.Errorf("v4, v6 ranges = %d, %d; want 3, 1", len(s.lo4), len(s.lo6))
	}
	// New unmaps too, and ignores host bits and invalid prefixes.
	n := New([]netip.Prefix{
		netip.MustParsePrefix("::ffff:0:0/96"), // all of IPv4
		netip.MustParsePrefix("2001:db8::1/32"),
		{},
	})
	if n.Len() != 2 {
		t.Errorf("Len = %d, want 2", n.Len())
	}
	check(t, n, []string{"0.0.0.0", "255.255.255.255", "2001:db8:ffff::"}, []string{"2001:db9::", "::"})
}

func TestEmpty(t *testing.T) {
	var nilSet *Set
	for _, s := range []*Set{nilSet, {}, New(nil), mustParse(t)} {
		if s.Contains(netip.MustParseAddr("1.2.3.4")) || s.Contains(netip.MustParseAddr("::")) || s.Contains(netip.Addr{}) {
			t.Errorf("empty set %#v contains something", s)
		}
		if s.Len() != 0 || s.Ranges() != 0 {
			t.Errorf("empty set: Len, Ranges = %d, %d", s.Len(), s.Ranges())
		}
	}
	if mustParse(t, "0.0.0.0/0").Contains(netip.Addr{}) {
		t.Error("zero Addr is in 0.0.0.0/0")
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		entries []string
		want    string // substring of the error
	}{
		{[]string{"1.2.3.4", "10.0.0.0/33"}, `entry 1 "10.0.0.0/33"`},
		{[]string{"banana"}, `entry 0 "banana"`},
		{[]string{"1.2.3.4", "2001:db8::/129", "x"}, `entry 1 "2001:db8::/129"`},
		{[]string{"1.2.3.4", ""}, `entry 1 "": empty entry`},
		{[]string{"fe80::1%eth0"}, `entry 0 "fe80::1%eth0": zoned addresses are not allowed`},
		{[]string{"1.2.3.4/"}, `entry 0 "1.2.3.4/"`},
		{[]string{"1.2.3"}, `entry 0 "1.2.3"`},
	} {
		s, err := Parse(tc.entries)
		if err == nil {
			t.Errorf("Parse(%q) = %v, nil; want error", tc.entries, s)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) error %q, want it to contain %q", tc.entries, err, tc.want)
		}
	}
	// White space around entries is fine.
	s := mustParse(t, " 10.0.0.0/8\t", "\t::1 ")
	check(t, s, []string{"10.0.0.1", "::1"}, nil)
}

func TestRead(t *testing.T) {
	const list = `# blocklist, generated
10.0.0.0/8
  192.0.2.1   # a single host

2001:db8::/32#no space before the comment
	# indented comment
::ffff:198.51.100.0/120
`
	s, err := Read(strings.NewReader(list), "block.txt")
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if s.Len() != 4 {
		t.Errorf("Len = %d, want 4", s.Len())
	}
	check(t, s,
		[]string{"10.9.9.9", "192.0.2.1", "2001:db8::1", "198.51.100.77"},
		[]string{"192.0.2.2", "11.0.0.0", "2001:db9::"},
	)

	_, err = Read(strings.NewReader("10.0.0.0/8\n# fine\n\n  300.1.1.1  # oops\n"), "block.txt")
	if err == nil {
		t.Fatal("Read of a bad list succeeded")
	}
	const want = `block.txt:4: bad entry: not an address or prefix`
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}

	_, err = Read(errReader{}, "broken")
	if !errors.Is(err, errBroken) || !strings.HasPrefix(err.Error(), "broken:1: ") {
		t.Errorf("Read of failing reader: %v", err)
	}
}

// TestReadErrorHidesContent: a list error never quotes the line, whatever
// it holds: a one-line secret read as a list must not come back in the
// error a script sees.
func TestReadErrorHidesContent(t *testing.T) {
	for _, tc := range []struct{ line, kind string }{
		{"hunter2-redis-password", "not an address or prefix"},
		{"root:$6$salt$hash:19000:0:99999:7:::", "not an address or prefix"},
		{"PATH=/usr/bin HOME=/root", "not an address or prefix"},
		{"10.0.0.0/99", "prefix length out of range"},
		{"10.0.0.0/secret", "bad prefix length"},
		{"fe80::1%secret", "a zoned address (not allowed)"},
		{"300.1.1.1/8", "not an address or prefix"},
	} {
		_, err := Read(strings.NewReader("10.0.0.0/8\n"+tc.line+"\n"), "f")
		if err == nil {
			t.Fatalf("%q: no error", tc.line)
		}
		if want := "f:2: bad entry: " + tc.kind; err.Error() != want {
			t.Errorf("%q: error %q, want %q", tc.line, err, want)
		}
		if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "root") {
			t.Errorf("%q: the error quotes the content: %q", tc.line, err)
		}
	}
}

var errBroken = errors.New("disk on fire")

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errBroken }

// naive is the reference: a linear scan of unmapped prefixes.
type naive []netip.Prefix

func (n naive) contains(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	for _, p := range n {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func randPrefix(r *rand.Rand, v6 bool) netip.Prefix {
	if v6 {
		var b [16]byte
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		b[0] = 0x20 | b[0]&0x3 // cluster in 2000::/14 so ranges collide
		return netip.PrefixFrom(netip.AddrFrom16(b), 8+r.IntN(121)).Masked()
	}
	b := [4]byte{byte(r.IntN(4)), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())}
	return netip.PrefixFrom(netip.AddrFrom4(b), 6+r.IntN(27)).Masked()
}

// prev and next step an address by one without wrapping.
func neighbours(a netip.Addr) []netip.Addr {
	out := []netip.Addr{a}
	if p := a.Prev(); p.IsValid() {
		out = append(out, p)
	}
	if n := a.Next(); n.IsValid() {
		out = append(out, n)
	}
	return out
}

// TestAgainstNaive compares Contains with a linear scan on random sets,
// probing every range edge and its neighbours plus random addresses.
func TestAgainstNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 50 {
		var ps []netip.Prefix
		for range 1 + r.IntN(60) {
			ps = append(ps, randPrefix(r, r.IntN(2) == 0))
		}
		s := New(ps)
		ref := naive(ps)
		var probes []netip.Addr
		for _, p := range ps {
			probes = append(probes, neighbours(p.Addr())...)
			probes = append(probes, neighbours(lastAddr(p))...)
			probes = append(probes, netip.AddrFrom16(p.Addr().As16())) // 4in6 form of v4
		}
		for range 200 {
			probes = append(probes, randPrefix(r, r.IntN(2) == 0).Addr())
		}
		for _, a := range probes {
			if got, want := s.Contains(a), ref.contains(a); got != want {
				t.Fatalf("round %d: Contains(%s) = %v, naive says %v; prefixes %v", round, a, got, want, ps)
			}
		}
	}
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func TestContainsDoesNotAllocate(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	ps := make([]netip.Prefix, 1000)
	for i := range ps {
		ps[i] = randPrefix(r, i%2 == 0)
	}
	s := New(ps)
	addrs := []netip.Addr{
		netip.MustParseAddr("1.2.3.4"),
		netip.MustParseAddr("::ffff:1.2.3.4"),
		netip.MustParseAddr("2001:db8::1"),
		netip.MustParseAddr("fe80::1%eth0"),
	}
	for _, a := range addrs {
		if n := testing.AllocsPerRun(100, func() { s.Contains(a) }); n != 0 {
			t.Errorf("Contains(%s) allocates %v times", a, n)
		}
	}
}

func randV4Prefixes(r *rand.Rand, n int) []netip.Prefix {
	ps := make([]netip.Prefix, n)
	for i := range ps {
		u := r.Uint32()
		b := [4]byte{byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)}
		ps[i] = netip.PrefixFrom(netip.AddrFrom4(b), 16+r.IntN(17)).Masked()
	}
	return ps
}

func randV4Addrs(r *rand.Rand, n int) []netip.Addr {
	as := make([]netip.Addr, n)
	for i := range as {
		u := r.Uint32()
		as[i] = netip.AddrFrom4([4]byte{byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)})
	}
	return as
}

func BenchmarkBuild100k(b *testing.B) {
	ps := randV4Prefixes(rand.New(rand.NewPCG(5, 6)), 100_000)
	b.ReportAllocs()
	for b.Loop() {
		New(ps)
	}
}

func BenchmarkParse100k(b *testing.B) {
	ps := randV4Prefixes(rand.New(rand.NewPCG(5, 6)), 100_000)
	strs := make([]string, len(ps))
	for i, p := range ps {
		strs[i] = p.String()
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(strs); err != nil {
			b.Fatal(err)
		}
	}
}

func benchContains(b *testing.B, n int) {
	r := rand.New(rand.NewPCG(7, 8))
	s := New(randV4Prefixes(r, n))
	addrs := randV4Addrs(r, 4096)
	b.ReportAllocs()
	i, hits := 0, 0
	for b.Loop() {
		if s.Contains(addrs[i&4095]) {
			hits++
		}
		i++
	}
	b.ReportMetric(float64(hits)/float64(i), "hit-ratio")
}

func BenchmarkContains10k(b *testing.B)  { benchContains(b, 10_000) }
func BenchmarkContains100k(b *testing.B) { benchContains(b, 100_000) }

func BenchmarkContainsIPv6_100k(b *testing.B) {
	r := rand.New(rand.NewPCG(9, 10))
	rand6 := func(bits int) netip.Prefix {
		var a [16]byte
		binary.BigEndian.PutUint64(a[:8], 0x2000<<48|r.Uint64()>>3)
		binary.BigEndian.PutUint64(a[8:], r.Uint64())
		return netip.PrefixFrom(netip.AddrFrom16(a), bits).Masked()
	}
	ps := make([]netip.Prefix, 100_000)
	addrs := make([]netip.Addr, 4096)
	for i := range ps {
		ps[i] = rand6(24 + r.IntN(41)) // /24 to /64
	}
	for i := range addrs {
		addrs[i] = rand6(128).Addr()
	}
	s := New(ps)
	b.ReportAllocs()
	i, hits := 0, 0
	for b.Loop() {
		if s.Contains(addrs[i&4095]) {
			hits++
		}
		i++
	}
	b.ReportMetric(float64(hits)/float64(i), "hit-ratio")
	b.ReportMetric(float64(s.Ranges()), "ranges")
}

// BenchmarkNaive10k is the baseline: a linear scan of []netip.Prefix with
// the same prefixes and probes as BenchmarkContains10k.
func BenchmarkNaive10k(b *testing.B) {
	r := rand.New(rand.NewPCG(7, 8))
	ref := naive(randV4Prefixes(r, 10_000))
	addrs := randV4Addrs(r, 4096)
	b.ReportAllocs()
	i, hits := 0, 0
	for b.Loop() {
		if ref.contains(addrs[i&4095]) {
			hits++
		}
		i++
	}
	b.ReportMetric(float64(hits)/float64(i), "hit-ratio")
}

// ReadWith refuses a list past MaxBytes (also when the limit cuts a line)
// or MaxEntries, naming the limit, and stops at Check's error.
func TestReadWithBounds(t *testing.T) {
	list := "10.0.0.0/8\n192.168.0.1\n# c\n172.16.0.0/12\n"
	if s, err := ReadWith(strings.NewReader(list), "l", ReadOptions{MaxBytes: int64(len(list)), MaxEntries: 3}); err != nil || s.Len() == 0 {
		t.Fatalf("at the limits: %v", err)
	}
	if _, err := ReadWith(strings.NewReader(list), "l", ReadOptions{MaxBytes: int64(len(list)) - 1}); err == nil || !strings.Contains(err.Error(), "larger than the limit") {
		t.Fatalf("one byte over: %v", err)
	}
	if _, err := ReadWith(strings.NewReader(list), "l", ReadOptions{MaxBytes: 14}); err == nil || !strings.Contains(err.Error(), "larger than the limit") {
		t.Fatalf("limit inside a line: %v", err)
	}
	if _, err := ReadWith(strings.NewReader(list), "l", ReadOptions{MaxEntries: 2}); err == nil || !strings.Contains(err.Error(), "l:4: more than 2 entries") {
		t.Fatalf("entries: %v", err)
	}
	stop := errors.New("stop")
	calls := 0
	_, err := ReadWith(strings.NewReader(strings.Repeat("10.0.0.1\n", 100)), "l", ReadOptions{CheckEvery: 10, Check: func() error {
		if calls++; calls == 3 {
			return stop
		}
		return nil
	}})
	if err != stop || calls != 3 {
		t.Fatalf("check: %v after %d calls", err, calls)
	}
}

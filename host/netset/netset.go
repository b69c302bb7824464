// Package netset owns immutable IP address sets (IPv4 and IPv6 prefixes in
// one set) built for firewall lookups: blocklists and allowlists that scripts
// test packet addresses against.
//
// A Set is built once from prefixes (New), strings (Parse) or a list file
// (Read). Building converts every prefix to an inclusive address range, sorts
// the ranges and merges overlapping and adjacent ones; Contains then is a
// binary search over the merged ranges: O(log n), no allocation, safe for
// concurrent use because a Set never changes.
//
// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are treated as the IPv4 address
// they carry, both when building and when looking up. An IPv6 prefix shorter
// than /96 is IPv6-only: ::/0 does not match IPv4 addresses.
package netset

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Set is an immutable set of IPv4 and IPv6 addresses. The zero value and a
// nil *Set are empty sets.
type Set struct {
	// Merged ranges: sorted, disjoint and non-adjacent; range i is
	// lo4[i]..hi4[i] inclusive. The bounds are kept in separate slices so
	// that the binary search over lo touches half the memory.
	lo4, hi4 []uint32
	lo6, hi6 []u128
	n        int // prefixes given
}

type range4 struct{ lo, hi uint32 }

// u128 is an IPv6 address as a 128-bit unsigned integer.
type u128 struct{ hi, lo uint64 }

type range6 struct{ lo, hi u128 }

func (a u128) less(b u128) bool {
	return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo)
}

func (a u128) cmp(b u128) int {
	if c := cmp.Compare(a.hi, b.hi); c != 0 {
		return c
	}
	return cmp.Compare(a.lo, b.lo)
}

func (a u128) isMax() bool { return a.hi == math.MaxUint64 && a.lo == math.MaxUint64 }

func (a u128) next() u128 {
	lo := a.lo + 1
	hi := a.hi
	if lo == 0 {
		hi++
	}
	return u128{hi, lo}
}

func addr6(a netip.Addr) u128 {
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func addr4(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

// New builds a set from prefixes. Host bits of a prefix are ignored
// (10.1.2.3/8 is 10.0.0.0/8); invalid (zero) prefixes are skipped and not
// counted by Len. An IPv4-mapped IPv6 prefix of length 96 or more is stored
// as the IPv4 prefix it maps.
func New(prefixes []netip.Prefix) *Set {
	s := &Set{}
	v4 := make([]range4, 0, len(prefixes))
	var v6 []range6
	for _, p := range prefixes {
		if !p.IsValid() {
			continue
		}
		p = unmapPrefix(p)
		s.n++
		if p.Addr().Is4() {
			lo := addr4(p.Addr())
			hi := lo | ^uint32(0)>>p.Bits() // Go defines x>>32 == 0
			v4 = append(v4, range4{lo, hi})
			continue
		}
		lo := addr6(p.Addr())
		v6 = append(v6, range6{lo, lastAddr6(lo, p.Bits())})
	}
	v4 = merge4(v4)
	s.lo4, s.hi4 = make([]uint32, len(v4)), make([]uint32, len(v4))
	for i, r := range v4 {
		s.lo4[i], s.hi4[i] = r.lo, r.hi
	}
	v6 = merge6(v6)
	s.lo6, s.hi6 = make([]u128, len(v6)), make([]u128, len(v6))
	for i, r := range v6 {
		s.lo6[i], s.hi6[i] = r.lo, r.hi
	}
	return s
}

// unmapPrefix turns ::ffff:a.b.c.d/n with n >= 96 into a.b.c.d/(n-96) and
// masks host bits.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	a := p.Addr()
	if a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked()
	}
	return p.Masked()
}

// lastAddr6 returns the last address of the /bits prefix starting at lo.
func lastAddr6(lo u128, bits int) u128 {
	if bits <= 64 { // Go defines x>>64 == 0
		return u128{lo.hi | math.MaxUint64>>bits, math.MaxUint64}
	}
	return u128{lo.hi, lo.lo | math.MaxUint64>>(bits-64)}
}

func merge4(rs []range4) []range4 {
	if len(rs) == 0 {
		return nil
	}
	slices.SortFunc(rs, func(a, b range4) int { return cmp.Compare(a.lo, b.lo) })
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if r.lo <= last.hi || (last.hi != math.MaxUint32 && r.lo == last.hi+1) {
			last.hi = max(last.hi, r.hi)
			continue
		}
		out = append(out, r)
	}
	return slices.Clip(out)
}

func merge6(rs []range6) []range6 {
	if len(rs) == 0 {
		return nil
	}
	slices.SortFunc(rs, func(a, b range6) int { return a.lo.cmp(b.lo) })
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if !last.hi.less(r.lo) || (!last.hi.isMax() && r.lo == last.hi.next()) {
			if last.hi.less(r.hi) {
				last.hi = r.hi
			}
			continue
		}
		out = append(out, r)
	}
	return slices.Clip(out)
}

// Contains reports whether a is in the set. An IPv4-mapped IPv6 address is
// looked up as IPv4; zones are ignored. It does not allocate.
func (s *Set) Contains(a netip.Addr) bool {
	if s == nil || !a.IsValid() {
		return false
	}
	if a.Is4() || a.Is4In6() {
		x := addr4(a.Unmap())
		los := s.lo4
		if len(los) == 0 || x < los[0] {
			return false
		}
		// Search for the last range with lo <= x: the only candidate,
		// since ranges are sorted and disjoint.
		base, n := 0, len(los)
		for n > 1 {
			half := n >> 1
			// Step to the upper half unless x < lo, i.e. x-lo borrows.
			// Arithmetic rather than an if, which Go compiles to a
			// poorly predictable branch.
			_, lt := bits.Sub32(x, los[base+half], 0)
			base += half & (int(lt) - 1)
			n -= half
		}
		return x <= s.hi4[base]
	}
	x := addr6(a)
	los := s.lo6
	if len(los) == 0 || x.less(los[0]) {
		return false
	}
	base, n := 0, len(los)
	for n > 1 {
		half := n >> 1
		lo := los[base+half]
		_, lt := bits.Sub64(x.lo, lo.lo, 0)
		_, lt = bits.Sub64(x.hi, lo.hi, lt)
		base += half & (int(lt) - 1)
		n -= half
	}
	return !s.hi6[base].less(x)
}

// Len returns the number of entries the set was built from, before merging.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return s.n
}

// Ranges returns the number of disjoint address ranges left after merging
// (IPv4 and IPv6 together), a measure of the set's size in memory.
func (s *Set) Ranges() int {
	if s == nil {
		return 0
	}
	return len(s.lo4) + len(s.lo6)
}

// ParsePrefix parses one set entry: an address ("192.0.2.1", "2001:db8::1")
// or a prefix in CIDR notation ("10.0.0.0/8", "2001:db8::/32"). Surrounding
// white space is ignored, host bits are cleared, an IPv4-mapped IPv6 entry
// is returned as IPv4 and zones are refused.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Prefix{}, errors.New("empty entry")
	}
	if strings.Contains(s, "%") {
		return netip.Prefix{}, errors.New("zoned addresses are not allowed")
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return unmapPrefix(p), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Parse builds a set from entries in the forms ParsePrefix accepts. The
// error names the first bad entry and its index.
func Parse(entries []string) (*Set, error) {
	ps := make([]netip.Prefix, len(entries))
	for i, e := range entries {
		p, err := ParsePrefix(e)
		if err != nil {
			return nil, fmt.Errorf("netset: entry %d %q: %w", i, e, err)
		}
		ps[i] = p
	}
	return New(ps), nil
}

// entryProblem says what kind of problem a refused list entry has,
// without quoting it.
func entryProblem(text string) string {
	if strings.Contains(text, "%") {
		return "a zoned address (not allowed)"
	}
	if addr, bits, ok := strings.Cut(text, "/"); ok {
		if _, err := netip.ParseAddr(addr); err == nil {
			if _, err := strconv.Atoi(bits); err == nil {
				return "prefix length out of range"
			}
			return "bad prefix length"
		}
	}
	return "not an address or prefix"
}

// Read builds a set from a list with one entry per line (see ParsePrefix).
// Blank lines and comments, from '#' to the end of the line, are ignored.
// name is used in errors, which read `NAME:LINE: bad entry: what kind of
// problem` and never quote the line: the file may hold anything.
func Read(r io.Reader, name string) (*Set, error) {
	return ReadWith(r, name, ReadOptions{})
}

// ReadOptions bound what ReadWith reads. Zero values are no bound.
type ReadOptions struct {
	// MaxBytes is the most the list may hold; past it nothing more is
	// read and the list is refused.
	MaxBytes int64
	// MaxEntries is the most entries (prefixes) the list may hold.
	MaxEntries int
	// Check, when set, is called every CheckEvery lines (default 4096); an
	// error it returns stops the read and is returned as it is.
	Check      func() error
	CheckEvery int
}

// ReadWith is Read with bounds: a list over MaxBytes or MaxEntries is
// refused with the limit, and Check can stop a long read (a load budget, a
// memory watch).
func ReadWith(r io.Reader, name string, o ReadOptions) (*Set, error) {
	if o.MaxBytes > 0 {
		r = io.LimitReader(r, o.MaxBytes+1)
	}
	cr := &countingReader{r: r}
	tooLarge := func() error {
		if o.MaxBytes > 0 && cr.n > o.MaxBytes {
			return fmt.Errorf("%s: larger than the limit of %d bytes (%d MiB)", name, o.MaxBytes, o.MaxBytes>>20)
		}
		return nil
	}
	every := o.CheckEvery
	if every <= 0 {
		every = 4096
	}
	var ps []netip.Prefix
	sc := bufio.NewScanner(cr)
	line := 0
	for sc.Scan() {
		line++
		if o.Check != nil && line%every == 0 {
			if err := o.Check(); err != nil {
				return nil, err
			}
		}
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		p, err := ParsePrefix(text)
		if err != nil {
			if err := tooLarge(); err != nil {
				return nil, err // a line cut at the limit
			}
			// Never the entry itself: a list file may be any file a
			// script is allowed to read, and the error reaches the
			// script.
			return nil, fmt.Errorf("%s:%d: bad entry: %s", name, line, entryProblem(text))
		}
		if o.MaxEntries > 0 && len(ps) >= o.MaxEntries {
			return nil, fmt.Errorf("%s:%d: more than %d entries (the limit)", name, line, o.MaxEntries)
		}
		ps = append(ps, p)
	}
	if err := tooLarge(); err != nil {
		return nil, err
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", name, line+1, err)
	}
	if o.Check != nil {
		if err := o.Check(); err != nil {
			return nil, err
		}
	}
	return New(ps), nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

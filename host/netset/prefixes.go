package netset

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// Prefixes returns the set as the fewest prefixes that cover exactly its
// merged ranges, IPv4 first, each family in address order: what a kernel
// interval set (nftables) is built from. It allocates the result.
func (s *Set) Prefixes() []netip.Prefix {
	if s == nil {
		return nil
	}
	var out []netip.Prefix
	for i := range s.lo4 {
		out = appendRange(out, u128{lo: uint64(s.lo4[i])}, u128{lo: uint64(s.hi4[i])}, 32)
	}
	for i := range s.lo6 {
		out = appendRange(out, s.lo6[i], s.hi6[i], 128)
	}
	return out
}

// appendRange appends the prefixes covering lo..hi (inclusive) of a
// width-bit address space: at each step the largest aligned block that
// starts at lo and ends at or before hi.
func appendRange(out []netip.Prefix, lo, hi u128, width int) []netip.Prefix {
	for {
		// Host bits of the block: limited by lo's alignment ...
		host := width
		if tz := lo.trailingZeros(); tz < host {
			host = tz
		}
		// ... and by the room left up to hi.
		for host > 0 && lo.add(lastOf(host)).cmp(hi) > 0 {
			host--
		}
		out = append(out, netip.PrefixFrom(lo.addr(width), width-host))
		end := lo.add(lastOf(host))
		if end.cmp(hi) >= 0 || (width == 32 && end.lo == 1<<32-1) || end.isMax() {
			return out
		}
		lo = end.next()
	}
}

// lastOf is 2^host - 1 as a u128.
func lastOf(host int) u128 {
	switch {
	case host == 0:
		return u128{}
	case host >= 128:
		return u128{^uint64(0), ^uint64(0)}
	case host >= 64:
		return u128{hi: 1<<(host-64) - 1, lo: ^uint64(0)}
	}
	return u128{lo: 1<<host - 1}
}

func (a u128) add(b u128) u128 {
	lo, c := bits.Add64(a.lo, b.lo, 0)
	hi, _ := bits.Add64(a.hi, b.hi, c)
	return u128{hi, lo}
}

func (a u128) trailingZeros() int {
	if a.lo != 0 {
		return bits.TrailingZeros64(a.lo)
	}
	if a.hi != 0 {
		return 64 + bits.TrailingZeros64(a.hi)
	}
	return 128
}

// addr is a as an address of width 32 (IPv4) or 128 bits.
func (a u128) addr(width int) netip.Addr {
	if width == 32 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(a.lo))
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], a.hi)
	binary.BigEndian.PutUint64(b[8:], a.lo)
	return netip.AddrFrom16(b)
}

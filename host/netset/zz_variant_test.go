package netset

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func (s *Set) contains6Branchy(a netip.Addr) bool {
	x := addr6(a)
	los := s.lo6
	if len(los) == 0 || x.less(los[0]) {
		return false
	}
	base, n := 0, len(los)
	for n > 1 {
		half := n >> 1
		if !x.less(los[base+half]) {
			base += half
		}
		n -= half
	}
	return !s.hi6[base].less(x)
}

func BenchmarkV6Variants(b *testing.B) {
	r := rand.New(rand.NewPCG(9, 10))
	rand6 := func(bits int) netip.Prefix {
		var a [16]byte
		binary.BigEndian.PutUint64(a[:8], 0x2000<<48|r.Uint64()>>3)
		binary.BigEndian.PutUint64(a[8:], r.Uint64())
		return netip.PrefixFrom(netip.AddrFrom16(a), bits).Masked()
	}
	for _, n := range []int{10_000, 100_000} {
		ps := make([]netip.Prefix, n)
		for i := range ps {
			ps[i] = rand6(24 + r.IntN(41))
		}
		addrs := make([]netip.Addr, 4096)
		for i := range addrs {
			if i%2 == 0 {
				addrs[i] = ps[r.IntN(n)].Addr().Next()
			} else {
				addrs[i] = rand6(128).Addr()
			}
		}
		s := New(ps)
		for i := 0; i < 3; i++ {
			b.Run("branchless", func(b *testing.B) {
				i := 0
				for b.Loop() {
					s.Contains(addrs[i&4095])
					i++
				}
			})
			b.Run("branchy", func(b *testing.B) {
				i := 0
				for b.Loop() {
					s.contains6Branchy(addrs[i&4095])
					i++
				}
			})
		}
	}
}

type twoLevel6 struct {
	idx []u128
	s   *Set
}

const blk = 32

func newTwoLevel6(s *Set) *twoLevel6 {
	t := &twoLevel6{s: s}
	for i := 0; i < len(s.lo6); i += blk {
		t.idx = append(t.idx, s.lo6[i])
	}
	return t
}

func search6(los []u128, x u128) int {
	base, n := 0, len(los)
	for n > 1 {
		half := n >> 1
		lo := los[base+half]
		_, lt := bits.Sub64(x.lo, lo.lo, 0)
		_, lt = bits.Sub64(x.hi, lo.hi, lt)
		base += half & (int(lt) - 1)
		n -= half
	}
	return base
}

func (t *twoLevel6) contains(a netip.Addr) bool {
	x := addr6(a)
	los := t.s.lo6
	if len(los) == 0 || x.less(los[0]) {
		return false
	}
	j := search6(t.idx, x) * blk
	i := j + search6(los[j:min(j+blk, len(los))], x)
	return !t.s.hi6[i].less(x)
}

func BenchmarkV6TwoLevel(b *testing.B) {
	r := rand.New(rand.NewPCG(9, 10))
	rand6 := func(bits int) netip.Prefix {
		var a [16]byte
		binary.BigEndian.PutUint64(a[:8], 0x2000<<48|r.Uint64()>>3)
		binary.BigEndian.PutUint64(a[8:], r.Uint64())
		return netip.PrefixFrom(netip.AddrFrom16(a), bits).Masked()
	}
	for _, n := range []int{10_000, 100_000} {
		ps := make([]netip.Prefix, n)
		for i := range ps {
			ps[i] = rand6(24 + r.IntN(41))
		}
		addrs := make([]netip.Addr, 4096)
		for i := range addrs {
			if i%2 == 0 {
				addrs[i] = ps[r.IntN(n)].Addr().Next()
			} else {
				addrs[i] = rand6(128).Addr()
			}
		}
		s := New(ps)
		tl := newTwoLevel6(s)
		for _, a := range addrs {
			if tl.contains(a) != s.Contains(a) {
				b.Fatal("mismatch", a)
			}
		}
		for i := 0; i < 3; i++ {
			b.Run("branchless", func(b *testing.B) {
				i := 0
				for b.Loop() {
					s.Contains(addrs[i&4095])
					i++
				}
			})
			b.Run("branchy", func(b *testing.B) {
				i := 0
				for b.Loop() {
					s.contains6Branchy(addrs[i&4095])
					i++
				}
			})
			b.Run("twolevel", func(b *testing.B) {
				i := 0
				for b.Loop() {
					tl.contains(addrs[i&4095])
					i++
				}
			})
		}
	}
}

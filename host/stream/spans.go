package stream

import "bytes"

// Which offsets of a flow are held: sorted, merged spans.

// span is a range [a, b) of offsets held.
type span struct{ a, b int }

// equalHeld reports whether v holds data at off wherever bytes are held.
func (f *Flow) equalHeld(v []byte, off int, data []byte) bool {
	end := off + len(data)
	for _, sp := range f.spans {
		a, b := max(sp.a, off), min(sp.b, end)
		if a < b && !bytes.Equal(v[a:b], data[a-off:b-off]) {
			return false
		}
	}
	return true
}

// covered reports whether [a, b) is held whole.
func (f *Flow) covered(a, b int) bool {
	for _, sp := range f.spans {
		if sp.a <= a && b <= sp.b {
			return true
		}
	}
	return false
}

// gaps returns the parts of [a, b) not held.
func (f *Flow) gaps(a, b int) []span {
	var out []span
	cur := a
	for _, sp := range f.spans {
		if sp.b <= cur {
			continue
		}
		if sp.a >= b {
			break
		}
		if sp.a > cur {
			out = append(out, span{cur, sp.a})
		}
		cur = max(cur, sp.b)
	}
	if cur < b {
		out = append(out, span{cur, b})
	}
	return out
}

// holes is how many spans f would hold with [a, b) added.
func (f *Flow) holes(a, b int) int {
	n := 1
	for _, sp := range f.spans {
		if sp.b < a || sp.a > b {
			n++
		}
	}
	return n
}

// addSpan marks [a, b) held, merging neighbours.
func (f *Flow) addSpan(a, b int) {
	out := f.spans[:0:0]
	placed := false
	for _, sp := range f.spans {
		switch {
		case sp.b < a:
			out = append(out, sp)
		case sp.a > b:
			if !placed {
				out = append(out, span{a, b})
				placed = true
			}
			out = append(out, sp)
		default:
			a, b = min(a, sp.a), max(b, sp.b)
		}
	}
	if !placed {
		out = append(out, span{a, b})
	}
	f.spans = out
}

// grow returns v lengthened to n bytes (zeros), with room to grow.
func grow(v []byte, n int) []byte {
	if cap(v) >= n {
		return v[:n]
	}
	nv := make([]byte, n, max(n, 2*cap(v), 512))
	copy(nv, v)
	return nv
}

package cluster

import (
	"crypto/rand"
	"encoding/binary"
	"sync/atomic"
	"time"
)

// version orders the writes of one map key across the fleet: a hybrid
// logical clock reading and the id of the node that wrote, compared in
// that order, the same way by every node and by the script in Redis
// (applyScript). H counts microseconds since the epoch (below 2^53, so
// Lua's doubles hold it exactly); N is a node id in [1, 2^48), or 0 for
// a version Redis made itself (the result of an increment).
type version struct {
	H int64
	N int64
}

// newer reports whether v orders after o.
func (v version) newer(o version) bool { return v.H > o.H || (v.H == o.H && v.N > o.N) }

// maxSkew is how far ahead of this node's wall clock a version seen from
// elsewhere may pull its hybrid clock: a peer with a clock far in the
// future would otherwise drag every node's clock along for good.
const maxSkew = time.Minute

// hlc is a hybrid logical clock: the wall clock in microseconds, pushed
// past every reading it gave and every version it observed, so that a
// node's write always orders after the writes it has seen.
type hlc struct {
	last atomic.Int64
	wall func() time.Time
}

// now returns a reading later than every earlier one and every observed
// version.
func (c *hlc) now() int64 {
	pt := c.wall().UnixMicro()
	for {
		l := c.last.Load()
		n := max(pt, l+1)
		if c.last.CompareAndSwap(l, n) {
			return n
		}
	}
}

// observe moves the clock past h, a version seen from another node (at
// most maxSkew ahead of the wall clock).
func (c *hlc) observe(h int64) {
	if h > c.wall().Add(maxSkew).UnixMicro() {
		return
	}
	for {
		l := c.last.Load()
		if h <= l || c.last.CompareAndSwap(l, h) {
			return
		}
	}
}

// nodeID is a random node id in [1, 2^48): ties between two nodes' clock
// readings are broken by it.
func nodeID() int64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return int64(binary.LittleEndian.Uint64(b[:])&(1<<48-1)) | 1
}

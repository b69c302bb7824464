// Package stream owns luafw's first-flight reassembly: for each flow (one
// direction of a TCP connection, by addresses and ports), the first bytes
// its sender sends, placed by sequence number, so that a parser reads what
// the receiver will read however the sender cut, reordered, repeated or
// disguised its segments. Inspection plugins (the ClientHello of TLS, DNS
// over TCP) read these bytes through the Lua `stream` module.
//
// What it guarantees:
//   - Bytes are placed by sequence number from the flow's start: ISN+1 when
//     the SYN was seen, else the lowest sequence number seen so far (a flow
//     picked up mid-way, whose start moves down when earlier bytes arrive).
//     Out-of-order segments are held until the gap before them fills.
//   - Bytes before the start (seqovl junk, a retransmitted SYN's place) and
//     beyond Limits.Bytes from it (a wrong sequence number, the far side of
//     the window) are ignored, as is a segment whose checksum is wrong (a
//     checksum the kernel left for the NIC to fill, the pseudo-header sum
//     alone, counts as right).
//   - Overlaps: a segment whose bytes equal those already held changes
//     nothing (a retransmission). One whose bytes differ makes a second
//     reading of the stream (a variant): the held variant keeps its bytes
//     (what a Linux receiver does for data it has queued: the segment that
//     arrived first wins) and the new variant takes the new ones (what Linux
//     does when the later segment starts earlier or covers the queued one
//     whole, and what the server reads when the first one was a fake that
//     never reached it: low TTL, bad acknowledgement, stale timestamp).
//     Up to Limits.Variants readings are kept, each parsed; a flow that
//     needs more is marked Ambiguous. A sender that is not evading never
//     makes a second reading.
//   - The urgent byte (URG flag, urgent pointer) is removed from the
//     stream, as a Linux receiver without SO_OOBINLINE (the default) does;
//     only the last one a flow announced is removed.
//   - A SYN starts the flow afresh (a new connection on the same addresses
//     and ports); its payload is not part of the stream (a server without
//     TCP Fast Open ignores it; callers parse it on its own). A RST ends the
//     flow.
//
// What it costs: a table is made when a plugin first asks for a stream, so
// packets of plugins that never do cost nothing. Each segment given to Add
// costs one map lookup; a flow without data holds about 360 bytes, one with
// data also its variants (grown as bytes arrive, at most Limits.Bytes
// each). The table holds at most Limits.Flows flows and Limits.Memory bytes
// of buffers; beyond either, the flow idle longest is dropped (Stats.Evicted),
// and flows idle for Limits.Idle are dropped when the table is next used
// (Stats.Expired). A flow whose caller has read what it needed (Finish)
// keeps its result and gives back its buffers.
//
// A Table is not safe for concurrent use: luafw keeps one per plugin state,
// and a state runs on one goroutine.
package stream

import (
	"bytes"
	"net/netip"
	"sync/atomic"
	"time"
)

// Key names a flow: one direction of a connection.
type Key struct {
	Src, Dst     netip.Addr
	SPort, DPort uint16
	// Conn tells apart flows on the same addresses and ports (QUIC: a hash
	// of the destination connection ID); 0 for TCP.
	Conn uint64
}

// TCP flag bits Add reads.
const (
	FlagFIN = 0x01
	FlagSYN = 0x02
	FlagRST = 0x04
	FlagURG = 0x20
)

// Segment is one TCP segment of a flow, as Add reads it.
type Segment struct {
	Seq     uint32
	Flags   uint8  // TCP flags (FlagSYN, FlagRST, FlagURG are read)
	Urgent  uint16 // the urgent pointer, read with FlagURG
	Payload []byte // not kept: Add copies what it holds
	// BadChecksum marks a segment the receiver would discard.
	BadChecksum bool
}

// Limits bound a table. Zero fields take the defaults.
type Limits struct {
	Bytes    int           // per flow, from its start (default 16384)
	Idle     time.Duration // a flow idle this long is dropped (default 30 s)
	Flows    int           // flows per table (default 4096)
	Memory   int           // bytes of buffers per table (default 4 MiB)
	Variants int           // readings kept per flow (default 8)
}

// Default limits.
const (
	DefaultBytes    = 16384
	DefaultIdle     = 30 * time.Second
	DefaultFlows    = 4096
	DefaultMemory   = 4 << 20
	DefaultVariants = 8
	// maxSpans bounds the holes a flow's bytes may have; a segment that
	// would make more is ignored.
	maxSpans = 64
)

func (l Limits) withDefaults() Limits {
	if l.Bytes <= 0 {
		l.Bytes = DefaultBytes
	}
	if l.Idle <= 0 {
		l.Idle = DefaultIdle
	}
	if l.Flows <= 0 {
		l.Flows = DefaultFlows
	}
	if l.Memory <= 0 {
		l.Memory = DefaultMemory
	}
	if l.Variants <= 0 {
		l.Variants = DefaultVariants
	}
	return l
}

// Stats count what a table did.
type Stats struct {
	Flows     int    // flows held now
	Bytes     int    // bytes of buffers held now
	Segments  uint64 // segments with data given to Add
	Dups      uint64 // of them, bytes all already held and equal (retransmissions)
	Ignored   uint64 // of them, ignored: bad checksum, outside the window, too many holes
	Conflicts uint64 // of them, bytes that differ from those held (a new reading, or Ambiguous)
	Evicted   uint64 // flows dropped for room (Limits.Flows, Limits.Memory)
	Expired   uint64 // flows dropped after Limits.Idle
}

// Flow is one flow's first flight.
type Flow struct {
	key        Key
	prev, next *Flow
	last       int64 // last use, ns

	isn     uint32
	haveISN bool
	base    uint32 // sequence number of offset 0
	spans   []span
	vars    [][]byte // readings; each as long as the highest offset held
	size    int      // bytes of buffers counted in the table
	urg     int      // offset of the urgent byte, -1 for none

	// Ambiguous reports that the flow needed more readings than
	// Limits.Variants.
	Ambiguous bool
	// Done is set by Finish: the caller read what it needed.
	Done bool
	// Result is what the caller kept with Finish.
	Result any
	// Changed reports that a segment made a new reading since the caller
	// last cleared it (after Finish: a fake came first, the real bytes
	// now); the caller reads the readings again.
	Changed bool
	settle  int  // after Finish or Fail: segments from this offset on are not held
	retry   bool // finished by Fail: earlier bytes (no SYN seen) reopen it
}

// Settled reports whether a segment at seq would change nothing: the flow
// is finished and seq lies beyond the bytes it still compares.
func (f *Flow) Settled(seq uint32) bool {
	return f.Done && int(int32(seq-f.base)) >= f.settle
}

// HaveISN reports whether the flow's SYN was seen.
func (f *Flow) HaveISN() bool { return f.haveISN }

// Variants returns how many readings the flow has (0 before any data).
func (f *Flow) Variants() int { return len(f.vars) }

// Contiguous returns how many bytes from the start are held without a gap
// (the urgent byte included).
func (f *Flow) Contiguous() int {
	if len(f.spans) == 0 || f.spans[0].a != 0 {
		return 0
	}
	return f.spans[0].b
}

// Add places segment s of flow k at time now (ns) and returns the flow,
// or nil when there is none (a RST, or a segment without data on a flow
// not seen before).
func (t *Table) Add(k Key, s Segment, now int64) *Flow {
	t.expire(now)
	f := t.flows[k]
	switch {
	case s.Flags&FlagRST != 0:
		if f != nil {
			t.remove(f)
		}
		return nil
	case s.Flags&FlagSYN != 0:
		if f != nil && f.haveISN && f.isn == s.Seq {
			t.touch(f, now) // a retransmitted SYN
			return f
		}
		if f != nil {
			t.remove(f)
		}
		f = t.insert(k, now)
		f.isn, f.haveISN, f.base = s.Seq, true, s.Seq+1
		return f
	case len(s.Payload) == 0:
		if f != nil {
			t.touch(f, now)
		}
		return f
	}
	t.count(&t.stats.Segments, func(c *Counters) *atomic.Uint64 { return &c.Segments })
	if f == nil {
		f = t.insert(k, now)
		f.base = s.Seq
	}
	t.touch(f, now)
	if f.Settled(s.Seq) {
		return f
	}
	if s.BadChecksum {
		t.count(&t.stats.Ignored, func(c *Counters) *atomic.Uint64 { return &c.Ignored })
		return f
	}
	t.place(f, s)
	t.shrink(f)
	return f
}

// place puts s's bytes into f.
func (t *Table) place(f *Flow, s Segment) {
	off := int(int32(s.Seq - f.base))
	data := s.Payload
	if off < 0 && !f.haveISN && (!f.Done || f.retry) && -off <= t.lim.Bytes && len(f.vars) > 0 {
		t.rebase(f, -off) // earlier bytes of a flow picked up mid-way
		off = 0
		f.Changed = f.Changed || f.Done
	} else if off < 0 && !f.haveISN && !f.Done && len(f.vars) == 0 {
		f.base, off = s.Seq, 0
	}
	if s.Flags&FlagURG != 0 && s.Urgent > 0 {
		if u := off + int(s.Urgent) - 1; u >= 0 && u < t.lim.Bytes {
			f.urg = u
		}
	}
	if off < 0 { // bytes before the start: old data, trimmed
		if -off >= len(data) {
			t.count(&t.stats.Ignored, func(c *Counters) *atomic.Uint64 { return &c.Ignored })
			return
		}
		data, off = data[-off:], 0
	}
	limit := t.lim.Bytes // on a finished flow too: a real hello longer than the fake
	if off >= limit {
		t.count(&t.stats.Ignored, func(c *Counters) *atomic.Uint64 { return &c.Ignored })
		return
	}
	if end := off + len(data); end > limit {
		data = data[:limit-off]
	}
	t.write(f, off, data)
}

// rebase moves f's start n bytes earlier.
func (t *Table) rebase(f *Flow, n int) {
	f.base -= uint32(n)
	for i, v := range f.vars {
		keep := min(len(v), t.lim.Bytes-n)
		nv := make([]byte, n+keep)
		copy(nv[n:], v[:keep])
		f.vars[i] = nv
	}
	out := f.spans[:0]
	for _, sp := range f.spans {
		sp.a, sp.b = sp.a+n, min(sp.b+n, t.lim.Bytes)
		if sp.a < sp.b {
			out = append(out, sp)
		}
	}
	f.spans = out
	if f.urg >= 0 {
		f.urg += n
	}
	t.account(f)
}

// write puts data at offset off of every reading of f, making a new
// reading where it differs from bytes held.
func (t *Table) write(f *Flow, off int, data []byte) {
	end := off + len(data)
	if len(f.vars) == 0 {
		f.vars = append(f.vars, nil)
	}
	if !f.covered(off, end) && f.holes(off, end) > maxSpans {
		t.count(&t.stats.Ignored, func(c *Counters) *atomic.Uint64 { return &c.Ignored })
		return
	}
	for i := range f.vars {
		if len(f.vars[i]) < end {
			f.vars[i] = grow(f.vars[i], end)
		}
	}
	// Compare with what each reading holds over the held parts.
	n := len(f.vars)
	differs, same := false, true
	for i := 0; i < n; i++ {
		v := f.vars[i]
		if !f.equalHeld(v, off, data) {
			same = false
			nv := make([]byte, len(v))
			copy(nv, v)
			copy(nv[off:], data)
			f.addVariant(t, nv)
			differs = true
		}
	}
	if differs {
		t.count(&t.stats.Conflicts, func(c *Counters) *atomic.Uint64 { return &c.Conflicts })
	}
	// Fill the holes of every reading (new ones already have data).
	for _, h := range f.gaps(off, end) {
		for i := range f.vars {
			copy(f.vars[i][h.a:h.b], data[h.a-off:h.b-off])
		}
	}
	if same && f.covered(off, end) {
		t.count(&t.stats.Dups, func(c *Counters) *atomic.Uint64 { return &c.Dups })
	}
	f.addSpan(off, end)
	t.account(f)
}

// addVariant keeps v as a new reading unless it repeats one or there is no
// room.
func (f *Flow) addVariant(t *Table, v []byte) {
	for _, o := range f.vars {
		if bytes.Equal(o, v) {
			return
		}
	}
	if len(f.vars) >= t.lim.Variants {
		f.Ambiguous, f.Changed = true, true
		return
	}
	f.vars = append(f.vars, v)
	f.Changed = true
}

// Reading returns reading i of the bytes held from the start without a
// gap, the urgent byte removed. The slice is valid until the next call on
// the table.
func (t *Table) Reading(f *Flow, i int) []byte {
	n := f.Contiguous()
	if i >= len(f.vars) || n == 0 {
		return nil
	}
	v := f.vars[i][:n]
	if f.urg < 0 || f.urg >= n {
		return v
	}
	t.scratch = append(append(t.scratch[:0], v[:f.urg]...), v[f.urg+1:]...)
	return t.scratch
}

// Full reports whether the flow holds Limits.Bytes from its start: no more
// will come.
func (t *Table) Full(f *Flow) bool { return f.Contiguous() >= t.lim.Bytes }

// Finish keeps result with f and gives back its buffers but for the
// bytes read so far from its start (Contiguous): later segments beyond them
// are not held, and Add keeps returning f (Done set) until the flow ends,
// expires or is evicted. A segment whose bytes differ from those kept makes
// a new reading and sets Changed: the first bytes were a fake.
func (t *Table) Finish(f *Flow, result any) {
	f.Done, f.Result, f.Changed, f.retry = true, result, false, false
	f.settle = f.Contiguous()
	for i, v := range f.vars {
		f.vars[i] = append([]byte(nil), v[:f.settle]...)
	}
	f.spans = f.spans[:0]
	if f.settle > 0 {
		f.spans = append(f.spans, span{0, f.settle})
	}
	t.account(f)
}

// Fail is Finish for a result that later bytes may change (the first bytes
// were not what the caller reads: perhaps a fake, perhaps a flow picked up
// mid-way): the flow keeps holding bytes up to Limits.Bytes, and a segment
// that differs from them, or one before the start of a flow whose SYN was
// not seen, sets Changed.
func (t *Table) Fail(f *Flow, result any) {
	f.Done, f.Result, f.Changed, f.retry = true, result, false, true
	f.settle = t.lim.Bytes
}

// Reopen undoes Finish on a flow the caller found Changed: bytes are held
// again, up to Limits.Bytes, and Done is cleared.
func (t *Table) Reopen(f *Flow) {
	f.Done, f.Result, f.Changed, f.retry, f.settle = false, nil, false, false, 0
}

// Consume drops the first n bytes of f's readings (as Reading returns
// them), which the caller has read: the flow's start moves past them and
// Limits.Bytes counts from there. Callers reading a stream of messages (DNS
// over TCP) use it to read past the first Limits.Bytes.
func (t *Table) Consume(f *Flow, n int) {
	if f.urg >= 0 && f.urg < n {
		n++ // the urgent byte, which readings leave out, goes too
		f.urg = -1
	}
	n = min(n, f.Contiguous())
	if n <= 0 {
		return
	}
	f.base += uint32(n)
	for i, v := range f.vars {
		f.vars[i] = v[:copy(v, v[n:])]
	}
	out := f.spans[:0]
	for _, sp := range f.spans {
		sp.a, sp.b = max(sp.a-n, 0), sp.b-n
		if sp.a < sp.b {
			out = append(out, sp)
		}
	}
	f.spans = out
	if f.urg >= 0 {
		f.urg -= n
	}
}

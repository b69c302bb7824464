package stream

import "sync/atomic"

// The table's bookkeeping: flows by key, a list by last use (for idle
// expiry and for eviction when the table is full), counters.

// Counters are Stats' counters shared by several tables (one plugin's, in
// every worker), safe to read from any goroutine.
type Counters struct {
	Segments, Dups, Ignored, Conflicts, Evicted, Expired atomic.Uint64
}

// Table holds the flows of one plugin state.
type Table struct {
	shared     *Counters // may be nil
	lim        Limits
	flows      map[Key]*Flow
	head, tail *Flow // by last use: head is the flow idle longest
	stats      Stats
	scratch    []byte
}

// NewTable returns an empty table with limits lim. Its counters are also
// added to shared, when not nil.
func NewTable(lim Limits, shared *Counters) *Table {
	return &Table{lim: lim.withDefaults(), flows: map[Key]*Flow{}, shared: shared}
}

// count adds one to a counter of the table's and of the shared ones.
func (t *Table) count(own *uint64, shared func(*Counters) *atomic.Uint64) {
	*own++
	if t.shared != nil {
		shared(t.shared).Add(1)
	}
}

// Limits returns the table's limits, defaults filled in.
func (t *Table) Limits() Limits { return t.lim }

// Stats returns the table's counters.
func (t *Table) Stats() Stats {
	s := t.stats
	s.Flows = len(t.flows)
	return s
}

// Get returns the flow of k, or nil.
func (t *Table) Get(k Key) *Flow { return t.flows[k] }

func (t *Table) insert(k Key, now int64) *Flow {
	f := &Flow{key: k, urg: -1, last: now}
	t.flows[k] = f
	t.pushBack(f)
	for len(t.flows) > t.lim.Flows && t.head != f {
		t.count(&t.stats.Evicted, func(c *Counters) *atomic.Uint64 { return &c.Evicted })
		t.remove(t.head)
	}
	return f
}

// shrink evicts the flows idle longest until the table's buffers fit,
// sparing f.
func (t *Table) shrink(f *Flow) {
	for t.stats.Bytes > t.lim.Memory && t.head != nil && t.head != f {
		t.count(&t.stats.Evicted, func(c *Counters) *atomic.Uint64 { return &c.Evicted })
		t.remove(t.head)
	}
}

// account brings the table's byte count in line with f's buffers.
func (t *Table) account(f *Flow) {
	n := 0
	for _, v := range f.vars {
		n += cap(v)
	}
	t.stats.Bytes += n - f.size
	f.size = n
}

func (t *Table) expire(now int64) {
	for t.head != nil && now-t.head.last > int64(t.lim.Idle) {
		t.count(&t.stats.Expired, func(c *Counters) *atomic.Uint64 { return &c.Expired })
		t.remove(t.head)
	}
}

func (t *Table) remove(f *Flow) {
	delete(t.flows, f.key)
	t.unlink(f)
	t.stats.Bytes -= f.size
	f.size = 0
}

func (t *Table) touch(f *Flow, now int64) {
	f.last = now
	if t.tail != f {
		t.unlink(f)
		t.pushBack(f)
	}
}

func (t *Table) pushBack(f *Flow) {
	f.prev, f.next = t.tail, nil
	if t.tail != nil {
		t.tail.next = f
	} else {
		t.head = f
	}
	t.tail = f
}

func (t *Table) unlink(f *Flow) {
	if f.prev != nil {
		f.prev.next = f.next
	} else if t.head == f {
		t.head = f.next
	}
	if f.next != nil {
		f.next.prev = f.prev
	} else if t.tail == f {
		t.tail = f.prev
	}
	f.prev, f.next = nil, nil
}

package daemon

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// heartbeat tells whether one queue reader makes progress. The reader adds
// one when a burst starts and one when it ends, so the count is odd while
// it is inside a burst. Two atomic adds per burst: nothing per packet.
// Padded to two cache lines of its own, so that readers on different
// cores do not contend for one.
type heartbeat struct {
	seq atomic.Uint64
	_   [120]byte
}

func (h *heartbeat) enter() { h.seq.Add(1) }
func (h *heartbeat) leave() { h.seq.Add(1) }

// readerState is what the health check knows of one reader.
type readerState struct {
	segment string
	queues  []uint16
	seen    uint64    // seq at the last check
	since   time.Time // when seq last changed (or the reader started)
	// waitSince is when a check first found packets waiting for this
	// reader since seq last changed; zero when none were.
	waitSince time.Time
}

// readers tracks every queue reader's heartbeat.
type readers struct {
	mu sync.Mutex
	m  map[*heartbeat]*readerState
}

// add registers a reader that serves queues for segment.
func (rs *readers) add(segment string, queues []uint16) *heartbeat {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.m == nil {
		rs.m = map[*heartbeat]*readerState{}
	}
	h := &heartbeat{}
	rs.m[h] = &readerState{segment: segment, queues: queues, since: time.Now()}
	return h
}

func (rs *readers) remove(h *heartbeat) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	delete(rs.m, h)
}

// stuck returns a description of each reader that has made no progress for
// longer than limit while it had work: inside one burst for that long, or
// with packets waiting in its kernel queues (waiting, by queue number) and
// no burst started. An idle reader, blocked in receive on empty queues, is
// healthy however long it waits.
func (rs *readers) stuck(now time.Time, limit time.Duration, waiting map[uint16]uint64) []string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	var out []string
	for h, st := range rs.m {
		seq := h.seq.Load()
		if seq != st.seen {
			st.seen, st.since, st.waitSince = seq, now, time.Time{}
			continue
		}
		if seq%2 == 1 {
			if busy := now.Sub(st.since); busy > limit {
				out = append(out, fmt.Sprintf("segment %s queues %v: inside one burst for %v", st.segment, st.queues, busy.Round(time.Millisecond)))
			}
			continue
		}
		var n uint64
		for _, q := range st.queues {
			n += waiting[q]
		}
		switch {
		case n == 0:
			st.waitSince = time.Time{}
		case st.waitSince.IsZero():
			// Packets may have arrived just now: stuck only if they still
			// wait, with no burst, a whole limit later.
			st.waitSince = now
		case now.Sub(st.waitSince) > limit:
			out = append(out, fmt.Sprintf("segment %s queues %v: %d packets waiting, no burst for %v", st.segment, st.queues, n, now.Sub(st.waitSince).Round(time.Millisecond)))
		}
	}
	sort.Strings(out)
	return out
}

// watchdog sends WATCHDOG=1 every interval/2 while every queue reader makes
// progress, and withholds it (logging which reader is stuck) while one does
// not, so the service manager restarts a daemon that no longer filters.
func (d *Daemon) watchdog(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	withheld := false
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			waiting := map[uint16]uint64{}
			if kq, err := kernelQueues(); err == nil {
				for _, q := range kq {
					waiting[uint16(q.QueueID)] = uint64(q.QueueTotal)
				}
			}
			stuck := d.svc.readers.stuck(now, interval, waiting)
			if len(stuck) > 0 {
				d.svc.stuck.Store(&stuck[0])
				if !withheld {
					d.log.Error("watchdog: a queue reader is stuck; withholding WATCHDOG=1", "readers", stuck)
					d.notify("STATUS=queue reader stuck: " + stuck[0])
				}
				withheld = true
				continue
			}
			d.svc.stuck.Store(nil)
			if withheld {
				d.log.Warn("watchdog: queue readers progress again; resuming WATCHDOG=1")
				d.notify("STATUS=" + d.statusLine())
				withheld = false
			}
			d.notify("WATCHDOG=1")
		}
	}
}

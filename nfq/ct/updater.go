package ct

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"
)

// Retry schedule for updates of entries that are not confirmed yet. A new
// connection's entry appears once its first packet has passed the verdict
// and left the stack. The daemon submits after its verdicts are written
// (queue.Socket.ServeThen), so retries are for packets queued again at a
// later hook and for callers that submit earlier; on a loaded machine the
// entry can take longer than 100 ms, the window this had before (the
// update was then given up and the connection never got its mark). A second, retried every
// 20 ms at most, costs an entry that never appears (its packet dropped)
// about 56 attempts, as many as the old schedule's 100 ms did.
// maxPending bounds the updates waiting at once (each retry pass looks at
// all of them); past it a submission fails, counted.
const (
	retryFirst  = 200 * time.Microsecond
	retryMax    = 20 * time.Millisecond
	retryWindow = time.Second
	maxPending  = 16384
)

// Updater applies conntrack updates off the packet path. Submit never
// blocks; Run applies the updates in batches and retries those whose entry
// is not confirmed yet (a new connection's entry appears once its first
// packet has passed the verdict) for up to a second. Updates of the same entry
// that are waiting are merged in submission order, so they apply as if one
// after the other.
type Updater struct {
	ct  *Conn
	in  chan item
	log *slog.Logger

	submitted, dropped, applied, failed, retries, sent atomic.Uint64
}

// UpdaterStats are an updater's counters since it was created.
type UpdaterStats struct {
	Submitted uint64 // accepted by Submit
	Dropped   uint64 // refused by Submit because the queue was full
	Applied   uint64 // written to the kernel (merged updates count each)
	Failed    uint64 // given up: no entry within the retry window, or an error
	Retries   uint64 // attempts that found no entry yet and were rescheduled
	Sent      uint64 // update messages written to the kernel (after merging)
}

// NewUpdater returns an updater writing through c with room for queueLen
// waiting submissions (default 4096 when queueLen <= 0). A nil logger
// discards logs.
func NewUpdater(c *Conn, queueLen int, logger *slog.Logger) *Updater {
	if queueLen <= 0 {
		queueLen = 4096
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Updater{ct: c, in: make(chan item, queueLen), log: logger}
}

// Submit queues an update without blocking. It returns false (and counts a
// drop) when the queue is full.
func (u *Updater) Submit(t Tuple, up Update) bool {
	select {
	case u.in <- item{t, up}:
		u.submitted.Add(1)
		return true
	default:
		u.dropped.Add(1)
		return false
	}
}

// Stats returns the counters.
func (u *Updater) Stats() UpdaterStats {
	return UpdaterStats{
		Submitted: u.submitted.Load(), Dropped: u.dropped.Load(), Applied: u.applied.Load(),
		Failed: u.failed.Load(), Retries: u.retries.Load(), Sent: u.sent.Load(),
	}
}

// pendingUpdate is the merged update of one entry waiting to be (re)tried.
type pendingUpdate struct {
	u        Update
	n        uint64 // submissions merged into u
	next     time.Time
	deadline time.Time
	backoff  time.Duration
}

// Run applies updates until ctx is done; updates still waiting then are
// counted as failed. It returns nil when ctx ends, or the error that made
// the conntrack socket unusable.
func (u *Updater) Run(ctx context.Context) error {
	pending := map[Tuple]*pendingUpdate{}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	batch := make([]item, 0, batchMax)
	keys := make([]Tuple, 0, batchMax)
	for {
		// Wait for a submission, or for the earliest retry.
		var next time.Time
		for _, p := range pending {
			if next.IsZero() || p.next.Before(next) {
				next = p.next
			}
		}
		var wake <-chan time.Time
		if !next.IsZero() {
			timer.Reset(time.Until(next))
			wake = timer.C
		}
		select {
		case <-ctx.Done():
			for _, p := range pending {
				u.failed.Add(p.n)
			}
			return nil
		case it := <-u.in:
			u.add(pending, it)
		case <-wake:
		}
		// Take whatever else is waiting, without blocking.
	drain:
		for range 4 * batchMax {
			select {
			case it := <-u.in:
				u.add(pending, it)
			default:
				break drain
			}
		}

		now := time.Now()
		batch, keys = batch[:0], keys[:0]
		for t, p := range pending {
			if p.next.After(now) {
				continue
			}
			batch = append(batch, item{t, p.u})
			keys = append(keys, t)
			if len(batch) == batchMax {
				if err := u.apply(pending, batch, keys, now); err != nil {
					return err
				}
				batch, keys = batch[:0], keys[:0]
			}
		}
		if len(batch) > 0 {
			if err := u.apply(pending, batch, keys, now); err != nil {
				return err
			}
		}
	}
}

// add merges a submission into the pending set. A new entry is due at once.
func (u *Updater) add(pending map[Tuple]*pendingUpdate, it item) {
	if p, ok := pending[it.t]; ok {
		p.u = merge(p.u, it.u)
		p.n++
		return
	}
	if len(pending) >= maxPending {
		u.failed.Add(1)
		return
	}
	now := time.Now()
	pending[it.t] = &pendingUpdate{u: it.u, n: 1, next: now, deadline: now.Add(retryWindow), backoff: retryFirst}
}

// apply writes one batch and settles each update: done, rescheduled, or
// failed.
func (u *Updater) apply(pending map[Tuple]*pendingUpdate, batch []item, keys []Tuple, now time.Time) error {
	u.sent.Add(uint64(len(batch)))
	errs, err := u.ct.updateBatch(batch)
	if err != nil {
		// The whole write failed: count it, keep going unless the socket is
		// gone.
		for _, t := range keys {
			u.failed.Add(pending[t].n)
			delete(pending, t)
		}
		u.log.Warn("conntrack update batch failed", "updates", len(batch), "err", err)
		if u.ct.closed() {
			return err
		}
		return nil
	}
	for i, t := range keys {
		p := pending[t]
		switch e := errs[i]; {
		case e == nil:
			u.applied.Add(p.n)
			delete(pending, t)
		case errors.Is(e, ErrNotFound) && now.Add(p.backoff).Before(p.deadline):
			u.retries.Add(1)
			p.next = now.Add(p.backoff)
			p.backoff = min(2*p.backoff, retryMax)
		default:
			u.failed.Add(p.n)
			delete(pending, t)
			u.log.Debug("conntrack update failed", "tuple", t, "err", e)
		}
	}
	return nil
}

// merge returns the update equivalent to applying a and then b.
func merge(a, b Update) Update {
	if b.SetMark {
		if a.SetMark {
			am, bm := fullMask32(a.MarkMask), fullMask32(b.MarkMask)
			a.Mark = a.Mark&am&^bm | b.Mark&bm
			a.MarkMask = am | bm
		} else {
			a.Mark, a.MarkMask = b.Mark, b.MarkMask
		}
		a.SetMark = true
	}
	if b.SetTimeout {
		a.Timeout, a.SetTimeout = b.Timeout, true
	}
	if b.SetLabels {
		if a.SetLabels {
			am, bm := labelMask(a), labelMask(b)
			for i := range 2 {
				a.Labels[i] = a.Labels[i]&am[i]&^bm[i] | b.Labels[i]&bm[i]
				a.LabelsMask[i] = am[i] | bm[i]
			}
		} else {
			a.Labels, a.LabelsMask = b.Labels, b.LabelsMask
		}
		a.SetLabels = true
	}
	return a
}

func fullMask32(m uint32) uint32 {
	if m == 0 {
		return ^uint32(0)
	}
	return m
}

func labelMask(u Update) [2]uint64 {
	if u.LabelsMask == [2]uint64{} {
		return u.Labels
	}
	return u.LabelsMask
}

// closed tells whether Close has run.
func (c *Conn) closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fd < 0
}

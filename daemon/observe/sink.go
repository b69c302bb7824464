package observe

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"time"
)

// maxBatch bounds the bytes a writer collects before one write: a batch is
// one record for the rotating file, so it never straddles two files.
const maxBatch = 64 << 10

// sink is a bounded queue of T in front of one writer goroutine.
type sink[T any] struct {
	name       string
	batch      int // bytes collected before a write (at most maxBatch)
	ch         chan T
	lost       atomic.Uint64 // queue full
	suppressed atomic.Uint64 // refused by the rate limit (events only)
	written    atomic.Uint64
	encode     func(b []byte, item *T) []byte
	report     func(b []byte, now time.Time, suppressed, lost uint64) []byte
	out        io.WriteCloser
	log        *slog.Logger
}

// offer queues item unless the queue is full.
func (s *sink[T]) offer(item T) bool {
	select {
	case s.ch <- item:
		return true
	default:
		s.lost.Add(1)
		return false
	}
}

// run writes what is queued until ctx ends, then what is left, and closes
// the output. Records count as written once their batch is written, as
// lost if the write fails.
func (s *sink[T]) run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var (
		buf              []byte
		pending          uint64 // records in buf
		repSupp, repLost uint64
		failing          bool
	)
	flush := func() {
		if len(buf) == 0 {
			return
		}
		if _, err := s.out.Write(buf); err != nil {
			if !failing {
				s.log.Error("writing "+s.name+" failed; dropping records until a write succeeds", "err", err)
			}
			failing = true
			s.lost.Add(pending)
		} else {
			failing = false
			s.written.Add(pending)
		}
		buf, pending = buf[:0], 0
	}
	// drain adds what is waiting to buf: one batch, or everything (at the
	// end), flushing each full batch.
	drain := func(all bool) {
		for {
			if len(buf) >= s.batch {
				if !all {
					return
				}
				flush()
			}
			select {
			case item := <-s.ch:
				buf = s.encode(buf, &item)
				pending++
			default:
				return
			}
		}
	}
	reportCounts := func() {
		supp, lost := s.suppressed.Load(), s.lost.Load()
		if (supp != repSupp || lost != repLost) && s.report != nil {
			buf = s.report(buf, time.Now(), supp-repSupp, lost-repLost)
			repSupp, repLost = supp, lost
			flush()
		}
	}
	defer func() {
		reportCounts()
		if err := s.out.Close(); err != nil {
			s.log.Error("closing "+s.name, "err", err)
		}
	}()
	for {
		select {
		case item := <-s.ch:
			buf = s.encode(buf, &item)
			pending++
			drain(false)
			flush()
		case <-tick.C:
			reportCounts()
		case <-ctx.Done():
			drain(true)
			flush()
			return
		}
	}
}

// Counts are an output's counters since start.
type Counts struct {
	Written    uint64 `json:"written"`
	Lost       uint64 `json:"lost"`       // the writer was behind: the queue was full
	Suppressed uint64 `json:"suppressed"` // over the rate limit
}

func (s *sink[T]) counts() Counts {
	return Counts{Written: s.written.Load(), Lost: s.lost.Load(), Suppressed: s.suppressed.Load()}
}

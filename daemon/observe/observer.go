package observe

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/luafw/luafw/config"
	"github.com/luafw/luafw/daemon/rotate"
	"github.com/luafw/luafw/internal/engine"
	"github.com/luafw/luafw/pcap"
)

// Observer writes the decision events and packet captures of one daemon
// run. Its methods are safe for concurrent use by the queue readers.
type Observer struct {
	evMask  config.VerdictMask
	events  *sink[Event]
	lim     *limiter
	capMask config.VerdictMask
	capture *sink[capRec]
	snaplen int
	wg      sync.WaitGroup
}

// New opens the outputs the configuration asks for; it returns nil when it
// asks for none. Start the writers with Start.
func New(cfg *config.File, log *slog.Logger) (*Observer, error) {
	if cfg.Events == nil && cfg.Capture == nil {
		return nil, nil
	}
	o := &Observer{}
	if e := cfg.Events; e != nil {
		if err := o.openEvents(cfg, e, log); err != nil {
			return nil, err
		}
	}
	if c := cfg.Capture; c != nil {
		if err := o.openCapture(cfg, c, log); err != nil {
			if o.events != nil {
				o.events.out.Close()
			}
			return nil, err
		}
	}
	return o, nil
}

func (o *Observer) openEvents(cfg *config.File, e *config.Events, log *slog.Logger) error {
	mask, err := config.VerdictSet(e.Verdicts)
	if err != nil {
		return err
	}
	var out io.WriteCloser = nopCloser{os.Stdout}
	if e.File != config.Stdout {
		size := int64(e.MaxSize)
		if size == 0 {
			size = config.DefaultEventsMaxSize
		}
		f, err := rotate.Open(cfg.Resolve(e.File), size, config.KeepOr(e.Keep), nil)
		if err != nil {
			return fmt.Errorf("events: %w", err)
		}
		out = f
	}
	rate := float64(config.DefaultEventsRate)
	if e.Rate != nil {
		rate = float64(*e.Rate)
	}
	o.evMask, o.lim = mask, newLimiter(rate, e.Burst)
	o.events = &sink[Event]{name: "events", batch: batchFor(e.MaxSize), ch: make(chan Event, queueLen(e.Queue)), out: out, log: log,
		encode: func(b []byte, ev *Event) []byte { return ev.AppendJSON(b) }, report: appendSuppressed}
	return nil
}

func (o *Observer) openCapture(cfg *config.File, c *config.Capture, log *slog.Logger) error {
	mask, err := config.VerdictSet(c.Verdicts)
	if err != nil {
		return err
	}
	size := int64(c.MaxSize)
	if size == 0 {
		size = config.DefaultCaptureMaxSize
	}
	snap := uint32(pcap.MaxCapLen)
	if c.Snaplen > 0 {
		snap = uint32(c.Snaplen)
	}
	hdr := pcap.NGHeader(pcap.LinkTypeRaw, snap)
	f, err := rotate.Open(cfg.Resolve(c.File), size, config.KeepOr(c.Keep), func() []byte { return hdr })
	if err != nil {
		return fmt.Errorf("capture: %w", err)
	}
	o.capMask, o.snaplen = mask, c.Snaplen
	o.capture = &sink[capRec]{name: "capture", batch: batchFor(c.MaxSize), ch: make(chan capRec, queueLen(c.Queue)), out: f, log: log,
		encode: encodeCapture}
	return nil
}

// batchFor keeps a batch to a quarter of a file, so files stay within
// their size (a batch is never split).
func batchFor(size config.Size) int {
	if size == 0 {
		return maxBatch
	}
	return int(min(maxBatch, max(1, size/4)))
}

func queueLen(n int) int {
	if n <= 0 {
		return config.DefaultQueueLen
	}
	return n
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// Start runs the writers until ctx ends; Wait waits for them to write what
// was queued and close their files.
func (o *Observer) Start(ctx context.Context) {
	for _, run := range []func(context.Context){o.runEvents, o.runCapture} {
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			run(ctx)
		}()
	}
}

func (o *Observer) runEvents(ctx context.Context) {
	if o.events != nil {
		o.events.run(ctx)
	}
}

func (o *Observer) runCapture(ctx context.Context) {
	if o.capture != nil {
		o.capture.run(ctx)
	}
}

// Wait waits for the writers Start began.
func (o *Observer) Wait() { o.wg.Wait() }

// Record reports a decided packet. seg names the segment (its key); the
// packet's bytes are copied if it is captured, so p may be reused at once.
func (o *Observer) Record(seg string, p *engine.Packet, d *engine.Decision) {
	evOn := o.events != nil && o.evMask.Has(d.Verdict)
	capOn := o.capture != nil && (o.capMask.Has(d.Verdict) || d.CaptureBy != "")
	if !evOn && !capOn {
		return
	}
	now := time.Now()
	if evOn {
		if o.lim.allow(now.UnixNano()) {
			o.events.offer(newEvent(now, seg, p, d))
		} else {
			o.events.suppressed.Add(1)
		}
	}
	if capOn {
		data := p.Data
		if o.snaplen > 0 && len(data) > o.snaplen {
			data = data[:o.snaplen]
		}
		buf := bufPool.Get().(*[]byte)
		*buf = append((*buf)[:0], data...)
		r := capRec{time: now, data: buf, origLen: len(p.Data), hook: p.Hook, segment: seg, plugin: d.By,
			callback: d.ByName, verdict: d.Verdict, captureBy: d.CaptureBy}
		if !o.capture.offer(r) {
			bufPool.Put(buf)
		}
	}
}

// Stats are the outputs' counters (zero for an output that is off).
type Stats struct {
	Events  Counts `json:"events"`
	Capture Counts `json:"capture"`
}

// Stats returns the counters.
func (o *Observer) Stats() Stats {
	var s Stats
	if o == nil {
		return s
	}
	if o.events != nil {
		s.Events = o.events.counts()
	}
	if o.capture != nil {
		s.Capture = o.capture.counts()
	}
	return s
}

package queue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	sendAttempts  = 5
	verdictMask   = 0xff // NF_VERDICT_MASK
	maxAltPayload = 0xffff - nlaHdrLen
)

// forcedVerdict is a packet whose message could not be parsed completely but
// whose id is known: it gets a verdict without the handler seeing it.
type forcedVerdict struct {
	queue uint16
	id    uint32
}

// allocHotPath preallocates every buffer Serve needs, so that receiving,
// parsing and answering a burst allocates nothing.
func (s *Socket) allocHotPath() {
	b := s.cfg.Burst
	s.slot = align(int(min(s.cfg.CopyRange, maxCopyRange))) + slotOverhead
	s.info.Burst = b
	s.info.SlotSize = s.slot
	s.bufs = make([]byte, b*s.slot)
	s.iovs = make([]unix.Iovec, b)
	s.hdrs = make([]mmsghdr, b)
	for i := range s.hdrs {
		s.iovs[i].Base = &s.bufs[i*s.slot]
		s.iovs[i].SetLen(s.slot)
		s.hdrs[i].hdr.Iov = &s.iovs[i]
		s.hdrs[i].hdr.SetIovlen(1)
	}
	s.dgrams = make([][]byte, b)
	s.msgs = make([]Msg, 0, b)
	s.out = make([]Verdict, b)
	s.vbuf = make([]byte, 0, b*(verdictLen+markLen))
	s.recvFn = func(fd uintptr) bool {
		for {
			r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&s.hdrs[0])),
				uintptr(len(s.hdrs)), unix.MSG_DONTWAIT, 0, 0)
			switch e {
			case 0:
				s.recvN = int(r)
				return true
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // wait in the runtime poller until readable
			default:
				s.recvErr = e
				return true
			}
		}
	}
	s.sendFn = func(fd uintptr) bool {
		for {
			_, e := unix.Write(int(fd), s.sendBuf)
			if e == unix.EINTR {
				continue
			}
			if e == unix.EAGAIN {
				return false
			}
			s.sendErr = e
			return true
		}
	}
}

// Serve receives packets and answers them until ctx is cancelled or Close is
// called; then it returns nil. It blocks for the first datagram, takes every
// datagram already waiting (up to Burst) in the same recvmmsg call, calls h
// once with the burst's packets and sends all verdicts in one sendmsg.
//
// h must fill out[i] for msgs[i]; out arrives zeroed, so a verdict left
// unset is VerdictDrop. msgs, their Payload and CT are valid only during the
// call. Receive errors, overruns (ENOBUFS) and malformed messages are counted
// and logged and Serve goes on. A verdict that still cannot be sent after
// retries is logged at error level and counted in SendErrors.
func (s *Socket) Serve(ctx context.Context, h func(msgs []Msg, out []Verdict)) error {
	return s.ServeThen(ctx, h, nil)
}

// ServeThen is Serve with sent, when not nil, called on the serving
// goroutine after each burst's verdicts have been written (not after a
// burst whose handler panicked: its packets got the fail verdict). The kernel has
// then acted on them: an accepted packet has gone on through the stack
// within the write, so a new connection's conntrack entry is confirmed
// (unless a later hook queued the packet again). Work that needs that, such
// as updating the entry, belongs there rather than in h.
func (s *Socket) ServeThen(ctx context.Context, h func(msgs []Msg, out []Verdict), sent func()) error {
	if !s.serveMu.TryLock() {
		return errors.New("nfq/queue: serve: already serving this socket")
	}
	defer s.serveMu.Unlock()
	s.sent = sent
	defer func() { s.sent = nil }()
	if s.closing.Load() {
		return fmt.Errorf("nfq/queue: serve: %w", os.ErrClosed)
	}
	if err := s.file.SetReadDeadline(time.Time{}); err != nil {
		return fmt.Errorf("nfq/queue: serve: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = s.file.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	for len(s.pending) > 0 {
		n := min(len(s.pending), s.cfg.Burst)
		s.process(s.pending[:n], h)
		s.pending = s.pending[n:]
	}
	s.pending = nil

	backoff := time.Duration(0)
	for {
		if ctx.Err() != nil || s.closing.Load() {
			return nil
		}
		n, err := s.receive()
		if err != nil {
			if ctx.Err() != nil || s.closing.Load() {
				return nil
			}
			switch {
			case errors.Is(err, unix.ENOBUFS):
				s.st.enobufs.Add(1)
				s.logLimited("nfqueue: receive overrun (ENOBUFS): the kernel dropped messages", err)
				continue
			case errors.Is(err, os.ErrClosed), errors.Is(err, unix.EBADF):
				return fmt.Errorf("nfq/queue: serve: %w", err)
			case errors.Is(err, os.ErrDeadlineExceeded):
				// A deadline left over from a cancelled context; clear it.
				_ = s.file.SetReadDeadline(time.Time{})
				continue
			}
			s.st.recvErrors.Add(1)
			s.logLimited("nfqueue: receive failed", err)
			backoff = min(max(2*backoff, time.Millisecond), 100*time.Millisecond)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.process(s.dgrams[:n], h)
	}
}

// receive reads up to Burst datagrams with one recvmmsg, waiting in the
// runtime poller for the first.
func (s *Socket) receive() (int, error) {
	s.recvN, s.recvErr = 0, nil
	if err := s.rc.Read(s.recvFn); err != nil {
		return 0, err
	}
	if s.recvErr != nil {
		return 0, s.recvErr
	}
	for i := 0; i < s.recvN; i++ {
		if s.hdrs[i].hdr.Flags&unix.MSG_TRUNC != 0 {
			s.st.truncated.Add(1)
		}
		off := i * s.slot
		s.dgrams[i] = s.bufs[off : off+min(int(s.hdrs[i].n), s.slot)]
	}
	return s.recvN, nil
}

// process parses the datagrams of one burst, runs h and sends the verdicts.
func (s *Socket) process(dgrams [][]byte, h func([]Msg, []Verdict)) {
	msgs := s.msgs[:0]
	forced := s.forced[:0]
	for _, d := range dgrams {
		for len(d) > 0 {
			typ, m, rest, err := nextMsg(d)
			if err != nil {
				s.st.parseErrors.Add(1)
				if q, id, ok := peekPacketID(d); ok {
					forced = append(forced, forcedVerdict{q, id})
				}
				break
			}
			d = rest
			switch typ {
			case msgPacket:
				msgs = append(msgs, Msg{})
				if err := parsePacket(m, &msgs[len(msgs)-1]); err != nil {
					msgs = msgs[:len(msgs)-1]
					s.st.parseErrors.Add(1)
					if q, id, ok := peekPacketID(m); ok {
						forced = append(forced, forcedVerdict{q, id})
					}
				}
			case unix.NLMSG_ERROR:
				if errno, _, ok := errnoOf(m); ok && errno != 0 {
					s.st.kernelErrors.Add(1)
					s.logLimited("nfqueue: kernel refused a verdict", errno)
				}
			}
		}
	}
	s.msgs, s.forced = msgs, forced

	handled := false // h ran to its end on this burst's packets
	if len(msgs) > 0 {
		if cap(s.out) < len(msgs) {
			s.out = make([]Verdict, len(msgs))
		}
		out := s.out[:len(msgs)]
		clear(out)
		handled = s.callHandler(h, msgs, out)
		n := uint64(len(msgs))
		s.st.received.Add(n)
		s.st.bursts.Add(1)
		if n > s.st.maxBurst.Load() {
			s.st.maxBurst.Store(n)
		}
		for i := range out {
			s.addVerdict(msgs[i].Queue, msgs[i].ID, &out[i])
		}
		clear(out) // drop references to altered payloads
	}
	if len(forced) > 0 {
		v := s.failVerdict()
		for _, f := range forced {
			s.addVerdict(f.queue, f.id, &v)
		}
		s.log.Warn("nfqueue: answered unparseable packets without the handler", "count", len(forced), "verdict", v.Verdict)
	}
	s.flush()
	if s.sent != nil && handled {
		s.sent()
	}
}

// callHandler runs h and reports whether it returned. A panic is logged
// and counted, and the whole burst gets the fail verdict: the socket keeps
// serving, and no packet is left without a verdict.
func (s *Socket) callHandler(h func([]Msg, []Verdict), msgs []Msg, out []Verdict) (returned bool) {
	defer func() {
		if p := recover(); p != nil {
			s.st.panics.Add(1)
			v := s.failVerdict()
			for i := range out {
				out[i] = v
			}
			s.log.Error("nfqueue: handler panicked; answering its burst with the fail verdict",
				"panic", p, "packets", len(msgs), "verdict", v.Verdict, "stack", string(debug.Stack()))
		}
	}()
	h(msgs, out)
	return true
}

// failVerdict is the verdict for packets the handler cannot judge.
func (s *Socket) failVerdict() Verdict {
	if s.cfg.FailOpen {
		return Verdict{Verdict: VerdictAccept}
	}
	return Verdict{Verdict: VerdictDrop}
}

// addVerdict appends one verdict to the send buffer, flushing first when
// the buffer would exceed one send chunk.
func (s *Socket) addVerdict(queue uint16, id uint32, v *Verdict) {
	if !validVerdict(v) {
		s.st.badVerdicts.Add(1)
		s.logLimited("nfqueue: invalid verdict from handler, dropping the packet",
			fmt.Errorf("verdict %#x with %d payload bytes", v.Verdict, len(v.Payload)))
		v = &Verdict{Verdict: VerdictDrop}
	}
	if len(s.vbuf) > 0 && len(s.vbuf)+verdictSize(v) > sendChunk {
		s.flush()
	}
	s.vbuf = appendVerdict(s.vbuf, queue, id, v, s.nextSeq())
	s.vcount++
}

func validVerdict(v *Verdict) bool {
	switch v.Verdict & verdictMask {
	case VerdictDrop, VerdictAccept, VerdictQueue, VerdictRepeat, VerdictStop:
	default:
		return false
	}
	return len(v.Payload) <= maxAltPayload
}

// flush sends the buffered verdicts in one sendmsg. If that keeps failing
// it sends them one by one, so that one bad verdict cannot hold back others.
func (s *Socket) flush() {
	if len(s.vbuf) == 0 {
		return
	}
	n := s.vcount
	err := s.sendRetry(s.vbuf)
	if err == nil {
		s.st.sent.Add(uint64(n))
	} else {
		var sent, failed uint64
		for d := s.vbuf; len(d) > 0; {
			_, m, rest, perr := nextMsg(d)
			if perr != nil {
				break
			}
			d = rest
			if s.sendRetry(m) == nil {
				sent++
			} else {
				failed++
			}
		}
		s.st.sent.Add(sent)
		s.st.sendErrors.Add(failed)
		if failed > 0 {
			s.log.Error("nfqueue: VERDICTS NOT SENT: these packets stay queued until the socket closes",
				"count", failed, "err", err)
		}
	}
	s.vbuf = s.vbuf[:0]
	s.vcount = 0
}

// sendRetry sends b, retrying errors that mean "not now".
func (s *Socket) sendRetry(b []byte) error {
	var err error
	for attempt := 1; attempt <= sendAttempts; attempt++ {
		s.sendBuf, s.sendErr = b, nil
		err = s.rc.Write(s.sendFn)
		if err == nil {
			err = s.sendErr
		}
		s.sendBuf = nil
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.ENOBUFS) && !errors.Is(err, unix.ENOMEM) && !errors.Is(err, unix.EAGAIN) {
			return err
		}
		time.Sleep(time.Duration(attempt) * time.Millisecond)
	}
	return err
}

func (s *Socket) logLimited(msg string, err error) {
	if ok, suppressed := s.errLog.allow(); ok {
		s.log.Warn(msg, "err", err, "suppressed", suppressed, "stats", s.Stats())
	}
}

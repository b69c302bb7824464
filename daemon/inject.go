package daemon

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/luafw/luafw/internal/engine"
	"github.com/luafw/luafw/internal/tokenbucket"
	"github.com/luafw/luafw/nfq/inject"
	"github.com/luafw/luafw/nfq/rules"
)

// injectQueue is how many injected packets wait for the sender; beyond it
// they are dropped (and counted) rather than stall a queue reader.
const injectQueue = 1024

// sender sends the packets scripts inject (engine.Decision.Injected), off the
// queue readers, through raw sockets, with the inject mark that luafw's
// diversions skip, so an injected packet never comes back to a script.
type sender struct {
	ch       chan engine.Injected
	in       *inject.Injector
	bit      uint32 // marks.inject
	reserved uint32 // marks.skip | marks.reject: never sent from scripts
	log      *slog.Logger

	sent, dropped, failed atomic.Uint64
	warned                tokenbucket.Every
}

func newSender(in *inject.Injector, rs rules.Set, log *slog.Logger) *sender {
	return &sender{ch: make(chan engine.Injected, injectQueue), in: in, bit: rs.InjectMark,
		reserved: rs.SkipMark | rs.RejectMark, log: log}
}

// run sends until ctx ends, then closes the sockets.
func (s *sender) run(ctx context.Context) {
	defer s.in.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-s.ch:
			mark := p.Mark&^(s.reserved|s.bit) | s.bit
			if err := s.in.Send(p.Data, mark); err != nil {
				s.failed.Add(1)
				s.logLimited("injected packet not sent", "plugin", p.Plugin, "err", err)
				continue
			}
			s.sent.Add(1)
		}
	}
}

// submit queues a decision's injected packets without blocking.
func (s *sender) submit(list []engine.Injected) {
	for _, p := range list {
		select {
		case s.ch <- p:
		default:
			s.dropped.Add(1)
			s.logLimited("injected packet dropped: the sender is behind", "plugin", p.Plugin, "queue", injectQueue)
		}
	}
}

// logLimited logs at most once a second.
func (s *sender) logLimited(msg string, args ...any) {
	if !s.warned.Allow(time.Now().UnixNano(), time.Second) {
		return
	}
	s.log.Warn(msg, append(args, "sent", s.sent.Load(), "dropped", s.dropped.Load(), "failed", s.failed.Load())...)
}

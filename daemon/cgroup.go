package daemon

import (
	"log/slog"
	"net/netip"
	"time"

	"github.com/luafw/luafw/internal/engine"
	"github.com/luafw/luafw/nfq/cgroup"
)

// cgroupSource finds the cgroup of the local socket that sent a packet,
// for pkt.cgroup and cgroup matches (engine.CgroupSource): one per reader
// of an output or postrouting segment, with a sock_diag socket of its own.
// NFQUEUE does not carry the cgroup; a lookup is one sock_diag request and
// reply (nfq/cgroup: about 19 µs here), so the answer is kept per flow for
// a second: a burst of one flow pays once.
type cgroupSource struct {
	r     *cgroup.Resolver
	log   *slog.Logger
	cache map[cgroupKey]cgroupEntry
}

type cgroupKey struct {
	proto    uint8
	src, dst netip.AddrPort
}

type cgroupEntry struct {
	path string
	ok   bool
	at   time.Time
}

const (
	cgroupCacheFor = time.Second
	cgroupCacheMax = 4096
)

func (s *cgroupSource) Cgroup(c *engine.Ctx) (string, bool) {
	p := c.Parsed()
	if p.Family == 0 || p.L4Off < 0 {
		return "", false
	}
	k := cgroupKey{p.Proto, netip.AddrPortFrom(p.Src, p.SrcPort), netip.AddrPortFrom(p.Dst, p.DstPort)}
	now := time.Now()
	if e, ok := s.cache[k]; ok && now.Sub(e.at) < cgroupCacheFor {
		return e.path, e.ok
	}
	path, ok, err := s.r.Lookup(k.proto, k.src, k.dst)
	if err != nil {
		s.log.Debug("cgroup lookup failed", "err", err)
	}
	if len(s.cache) >= cgroupCacheMax {
		clear(s.cache)
	}
	s.cache[k] = cgroupEntry{path: path, ok: ok, at: now}
	return path, ok
}

// openCgroupSource opens a source for a reader of hook h, or returns nil
// where packets have no local socket or no cgroup2 is mounted.
func (d *Daemon) openCgroupSource(h engine.Hook) *cgroupSource {
	if h != engine.Output && h != engine.Postrouting {
		return nil
	}
	r, err := cgroup.Open()
	if err != nil {
		d.log.Debug("pkt.cgroup unavailable", "err", err)
		return nil
	}
	return &cgroupSource{r: r, log: d.log, cache: map[cgroupKey]cgroupEntry{}}
}

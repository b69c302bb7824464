package engine

// What the kernel side asks of the matches: the packets a diversion (the
// callbacks of one hook in a priority range) must send to userspace.

// hookMatch is one callback's priority and match (nil: every packet).
type hookMatch struct {
	priority int
	matcher  *matcher
}

// segmentMatches returns the matches of the callbacks in ms with priority
// in [lo, hi); all is true when one of them takes every packet (or there
// are none), so the diversion must not be narrowed.
func segmentMatches(ms []hookMatch, lo, hi int) (out []Match, all bool) {
	for _, hm := range ms {
		if hm.priority < lo || hm.priority >= hi {
			continue
		}
		if hm.matcher == nil {
			return nil, true
		}
		out = append(out, hm.matcher.m)
	}
	return out, len(out) == 0
}

// SegmentMatches returns the matches of the running callbacks of hook h
// with priority in [lo, hi): the union of what they want. all is true when
// some callback there has no match, and every packet must be diverted.
func (e *Engine) SegmentMatches(h Hook, lo, hi int) (ms []Match, all bool) {
	if int(h) >= NumHooks {
		return nil, true
	}
	chain := e.gen.Load().chains[h]
	hms := make([]hookMatch, len(chain))
	for i, en := range chain {
		hms[i] = hookMatch{en.priority, en.matcher}
	}
	return segmentMatches(hms, lo, hi)
}

// SegmentMatches is Engine.SegmentMatches for the set p, once committed.
func (p *Prepared) SegmentMatches(h Hook, lo, hi int) (ms []Match, all bool) {
	if int(h) >= NumHooks {
		return nil, true
	}
	return segmentMatches(p.matches[h], lo, hi)
}

// matchesOf lists the matches of the chains plugins would make, with the
// Go callbacks registered now. Called with loadMu.
func (e *Engine) matchesOf(plugins []*plugin) (out [NumHooks][]hookMatch) {
	for _, gf := range e.goFuncs {
		out[gf.hook] = append(out[gf.hook], hookMatch{gf.priority, gf.matcher})
	}
	for _, p := range plugins {
		for _, r := range p.regs {
			for _, h := range r.hooks {
				out[h] = append(out[h], hookMatch{r.priority, r.matcher})
			}
		}
	}
	return out
}

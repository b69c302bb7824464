package daemon

import (
	"github.com/luafw/luafw/internal/engine"
	"github.com/luafw/luafw/nfq/rules"
)

// matchSource is what knows the callbacks' matches: the running engine,
// or a set prepared for a reload.
type matchSource interface {
	SegmentMatches(h engine.Hook, lo, hi int) (ms []engine.Match, all bool)
}

// segmentMatches turns the matches of a segment's callbacks into the
// kernel's: nil (divert everything the divert: filter passes) when one of
// them takes every packet.
func segmentMatches(src matchSource, seg Segment) []rules.Match {
	if src == nil {
		return nil
	}
	ms, all := src.SegmentMatches(seg.Hook, seg.Lo, seg.Hi)
	if all {
		return nil
	}
	out := make([]rules.Match, len(ms))
	for i, m := range ms {
		out[i] = kernelMatch(m)
	}
	return out
}

func kernelMatch(m engine.Match) rules.Match {
	km := rules.Match{Protos: m.Protos, InIfaces: m.InIfaces, OutIfaces: m.OutIfaces,
		SPorts: kernelPorts(m.SPorts), DPorts: kernelPorts(m.DPorts),
		TCPFlagsMask: m.TCPFlagsMask, TCPFlags: m.TCPFlags, MaxPackets: m.First, Cgroup: m.Cgroup}
	if m.Src != nil {
		km.Src = m.Src.Prefixes()
	}
	if m.Dst != nil {
		km.Dst = m.Dst.Prefixes()
	}
	km.CTStates = m.CTStates // engine.CTState is netfilter.CTState
	return km
}

func kernelPorts(rs []engine.PortRange) []rules.PortRange {
	out := make([]rules.PortRange, len(rs))
	for i, r := range rs {
		out[i] = rules.PortRange{Lo: r.Lo, Hi: r.Hi}
	}
	return out
}

package daemon

import (
	"github.com/luafw/luafw/internal/engine"
	"github.com/luafw/luafw/nfq"
)

// matchSource is what knows the callbacks' matches: the running engine,
// or a set prepared for a reload.
type matchSource interface {
	SegmentMatches(h engine.Hook, lo, hi int) (ms []engine.Match, all bool)
}

// segmentMatches turns the matches of a segment's callbacks into the
// kernel's: nil (divert everything the divert: filter passes) when one of
// them takes every packet.
func segmentMatches(src matchSource, seg Segment) []nfq.Match {
	if src == nil {
		return nil
	}
	ms, all := src.SegmentMatches(seg.Hook, seg.Lo, seg.Hi)
	if all {
		return nil
	}
	out := make([]nfq.Match, len(ms))
	for i, m := range ms {
		out[i] = kernelMatch(m)
	}
	return out
}

// stateIndex is the nfq per-state index of each engine state.
var stateIndex = map[engine.CTState]int{engine.CTNew: nfq.CTNew, engine.CTEstablished: nfq.CTEstablished,
	engine.CTRelated: nfq.CTRelated, engine.CTInvalid: nfq.CTInvalid, engine.CTUntracked: nfq.CTUntracked}

func kernelMatch(m engine.Match) nfq.Match {
	km := nfq.Match{Protos: m.Protos, InIfaces: m.InIfaces, OutIfaces: m.OutIfaces,
		SPorts: kernelPorts(m.SPorts), DPorts: kernelPorts(m.DPorts),
		TCPFlagsMask: m.TCPFlagsMask, TCPFlags: m.TCPFlags, MaxPackets: m.First}
	if m.Src != nil {
		km.Src = m.Src.Prefixes()
	}
	if m.Dst != nil {
		km.Dst = m.Dst.Prefixes()
	}
	for _, s := range m.CTStates {
		km.CTStates = append(km.CTStates, stateIndex[s])
	}
	return km
}

func kernelPorts(rs []engine.PortRange) []nfq.PortRange {
	out := make([]nfq.PortRange, len(rs))
	for i, r := range rs {
		out[i] = nfq.PortRange{Lo: r.Lo, Hi: r.Hi}
	}
	return out
}

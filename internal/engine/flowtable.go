package engine

import (
	"net/netip"
	"time"

	"github.com/luafw/luafw/host/packet"
	lua "github.com/luafw/luafw/lua"
)

// pkt.flow: a Lua table per flow and hook, per plugin state, that lives as
// long as the flow. A flow is the packet's protocol and its two endpoints,
// in either direction (a reply reads the table its request wrote). The
// hook is part of the key so that tests and replays (one worker runs every
// hook) see what the kernel path does (each diversion has its workers).
// The table
// of a plugin state is made on the first read of pkt.flow, so a plugin
// that never reads it pays nothing; each entry is dropped when its flow
// has been idle for its timeout (TCP after a FIN or RST: FlowClosedTimeout)
// and the table holds at most MaxFlows entries (the least recently seen
// make room). The tables count towards the plugin's memory limit (the
// memory walk visits them).
//
// A plugin state belongs to one worker, that is one queue: the packets of
// a flow that one diversion queues reach the same worker (the kernel's
// queue balancing hashes flows), so its callbacks of that diversion share
// the table. Callbacks of one hook that netfilter stages split into two
// diversions run in two workers, and see two tables.

// Limits of pkt.flow.
const (
	// MaxFlows is how many flows one plugin state keeps tables for.
	MaxFlows = 65536
	// FlowTCPTimeout is how long a TCP flow's table outlives its last
	// packet; FlowOtherTimeout the same for other protocols.
	FlowTCPTimeout   = 10 * time.Minute
	FlowOtherTimeout = 2 * time.Minute
	// FlowClosedTimeout is how long a TCP flow's table outlives its
	// last packet once a FIN or RST was seen.
	FlowClosedTimeout = 10 * time.Second
	// flowSweep is how many entries a read of pkt.flow looks at for
	// expiry, besides its own.
	flowSweep = 4
)

// flowKey names a flow in either direction at one hook: its endpoints in
// order.
type flowKey struct {
	hook  Hook
	proto uint8
	a, b  netip.AddrPort
}

type flowEntry struct {
	key     flowKey
	t       *lua.LTable
	expires int64 // engine clock, Unix nanoseconds
	closed  bool  // a TCP FIN or RST was seen
}

// flowTable is one plugin state's flows: entries in a slice (swept by a
// moving cursor), indexed by key.
type flowTable struct {
	index   map[flowKey]int
	entries []flowEntry
	cursor  int
	// The last packet's table, for more reads of pkt.flow in one call.
	seq  uint64
	last *lua.LTable
}

// flowValue is pkt.flow: the packet's flow table, made on first use; nil
// for a packet that is not IP.
func (ps *pluginState) flowValue(c *Ctx) lua.LValue {
	ft := ps.flows
	if ft == nil {
		ft = &flowTable{index: map[flowKey]int{}}
		ps.flows = ft
	}
	if ft.seq == c.seq && ft.last != nil {
		return ft.last
	}
	p := c.Parsed()
	if p.Family == 0 {
		return lua.LNil
	}
	k := flowKey{hook: c.pkt.Hook, proto: p.Proto, a: netip.AddrPortFrom(p.Src, p.SrcPort), b: netip.AddrPortFrom(p.Dst, p.DstPort)}
	if k.b.Addr().Less(k.a.Addr()) || k.a.Addr() == k.b.Addr() && k.b.Port() < k.a.Port() {
		k.a, k.b = k.b, k.a
	}
	now := ps.e.opts.Clock().UnixNano()
	ft.sweep(now)
	i, ok := ft.index[k]
	if ok && ft.entries[i].expires <= now {
		ft.remove(i)
		ok = false
	}
	if !ok {
		if len(ft.entries) >= MaxFlows {
			ft.evictOldest()
		}
		i = len(ft.entries)
		ft.entries = append(ft.entries, flowEntry{key: k, t: ps.L.NewTable()})
		ft.index[k] = i
	}
	e := &ft.entries[i]
	timeout := FlowOtherTimeout
	if p.Proto == packet.ProtoTCP {
		timeout = FlowTCPTimeout
		// Once closed, later packets (the last ACK, retransmissions) do
		// not give the flow its long timeout back.
		e.closed = e.closed || p.TCPFlags&(packet.TCPFin|packet.TCPRst) != 0
		if e.closed {
			timeout = FlowClosedTimeout
		}
	}
	e.expires = now + int64(timeout)
	ft.seq, ft.last = c.seq, e.t
	return e.t
}

// sweep drops expired entries among the next few.
func (ft *flowTable) sweep(now int64) {
	for range flowSweep {
		if len(ft.entries) == 0 {
			return
		}
		if ft.cursor >= len(ft.entries) {
			ft.cursor = 0
		}
		if ft.entries[ft.cursor].expires <= now {
			ft.remove(ft.cursor) // the last entry moves here: look at it next
			continue
		}
		ft.cursor++
	}
}

// remove drops entry i, moving the last entry into its place.
func (ft *flowTable) remove(i int) {
	delete(ft.index, ft.entries[i].key)
	last := len(ft.entries) - 1
	if i != last {
		ft.entries[i] = ft.entries[last]
		ft.index[ft.entries[i].key] = i
	}
	ft.entries[last] = flowEntry{}
	ft.entries = ft.entries[:last]
	ft.last = nil
}

// evictOldest drops the entry that expires first (the least recently
// seen of its kind): a full table costs one scan per new flow.
func (ft *flowTable) evictOldest() {
	oldest := 0
	for i := range ft.entries {
		if ft.entries[i].expires < ft.entries[oldest].expires {
			oldest = i
		}
	}
	ft.remove(oldest)
}

// flowCount is the number of flows of the state, for tests and stats.
func (ps *pluginState) flowCount() int {
	if ps.flows == nil {
		return 0
	}
	return len(ps.flows.entries)
}

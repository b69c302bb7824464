package engine

import (
	"encoding/binary"
	"hash/maphash"
	"time"

	lua "github.com/luafw/luafw/lua"

	"github.com/luafw/luafw/host/packet"
	"github.com/luafw/luafw/host/stream"
	"github.com/luafw/luafw/host/tlshello"
)

// The stream module: what a flow's sender sent first, reassembled by
// sequence number (package stream), for inspection that a split,
// reordered or disguised first flight must not slip past.
//
//	stream.tls_hello(pkt) -> hello | nil, reason
//	    hello = {sni=, names={...}, alpn={...}, version=, version_name=,
//	        legacy_version=, readings=, ambiguous=}; reason "more" while
//	    the hello is incomplete. Once complete, the same table is returned
//	    for every later packet of the flow (a script may keep its decision
//	    in it), until the flow ends (RST, a new SYN) or is idle too long.
//	    QUIC Initial packets (UDP) are read the same way (quic.go).
//	stream.dns(pkt) -> {msg, ...} | nil, reason (DNS over TCP, streamlib_dns.go)
//	stream.limits{bytes=, seconds=, flows=, memory=, readings=} (top level)
//	stream.stats() -> {flows=, bytes=, segments=, dups=, ignored=,
//	    conflicts=, evicted=, expired=}
//
// A plugin state gets its table of flows when it first asks for a stream;
// plugins that never do pay nothing.

// streamState is one plugin state's streams.
type streamState struct {
	ps       *pluginState
	lim      stream.Limits
	tcp, udp *stream.Table // made on first use
	quicBuf  []byte
	seed     maphash.Seed // hashes QUIC connection IDs into flow keys
	hello    tlshello.Hello
	helloBuf []byte
}

func openStream(ps *pluginState) lua.LValue {
	s := &streamState{ps: ps, seed: maphash.MakeSeed()}
	L := ps.L
	mod := L.NewTable()
	mod.RawSetString("tls_hello", L.NewFunction(s.tlsHello))
	mod.RawSetString("dns", L.NewFunction(s.dns))
	mod.RawSetString("limits", L.NewFunction(s.limits))
	mod.RawSetString("stats", L.NewFunction(s.stats))
	return mod
}

// limits is stream.limits{...}, at the top level only.
func (s *streamState) limits(L *lua.LState) int {
	if !s.ps.loading {
		L.RaiseError("stream.limits works only at the top level of a plugin")
	}
	t := L.CheckTable(1)
	t.ForEach(func(k, _ lua.LValue) {
		switch k.String() {
		case "bytes", "seconds", "flows", "memory", "readings":
		default:
			L.ArgError(1, "unknown limit "+k.String()+" (want bytes, seconds, flows, memory, readings)")
		}
	})
	s.lim = stream.Limits{
		Bytes:    checkOptInt(L, t, "bytes", stream.DefaultBytes, 64, 1<<20),
		Idle:     time.Duration(checkOptInt(L, t, "seconds", int(stream.DefaultIdle/time.Second), 1, 3600)) * time.Second,
		Flows:    checkOptInt(L, t, "flows", stream.DefaultFlows, 1, 1<<20),
		Memory:   checkOptInt(L, t, "memory", stream.DefaultMemory, 1<<10, 1<<30),
		Variants: checkOptInt(L, t, "readings", stream.DefaultVariants, 1, 16),
	}
	return 0
}

// counters are the plugin's shared stream counters (metrics).
func (s *streamState) counters() *stream.Counters {
	if s.ps.p.counters == nil {
		return nil
	}
	return &s.ps.p.counters.stream
}

// stats is stream.stats().
func (s *streamState) stats(L *lua.LState) int {
	var st stream.Stats
	if s.tcp != nil {
		st = s.tcp.Stats()
	}
	t := L.CreateTable(0, 8)
	for _, f := range []struct {
		k string
		v uint64
	}{{"flows", uint64(st.Flows)}, {"bytes", uint64(st.Bytes)}, {"segments", st.Segments}, {"dups", st.Dups},
		{"ignored", st.Ignored}, {"conflicts", st.Conflicts}, {"evicted", st.Evicted}, {"expired", st.Expired}} {
		t.RawSetString(f.k, lua.LNumber(f.v))
	}
	L.Push(t)
	return 1
}

// packetArg checks that argument 1 is the packet of the running callback
// and returns its Ctx.
func (s *streamState) packetArg(L *lua.LState, what string) *Ctx {
	if L.Get(1) != s.ps.pkt {
		L.ArgError(1, what+" wants the packet (pkt)")
	}
	return s.ps.callbackCtx(L, what)
}

// tcpFlow adds c's TCP segment to the state's table and returns its flow,
// and the segment's flags and payload.
func (s *streamState) tcpFlow(c *Ctx) (f *stream.Flow, flags uint8, payload []byte) {
	p := c.Parsed()
	data := c.pkt.Data
	if p.Proto != packet.ProtoTCP || p.L4Off < 0 || p.PayloadOff < 0 || p.NonFirstFragment {
		return nil, 0, nil
	}
	if s.tcp == nil {
		s.tcp = stream.NewTable(s.lim, s.counters())
	}
	k := stream.Key{Src: p.Src, Dst: p.Dst, SPort: p.SrcPort, DPort: p.DstPort}
	flags = p.TCPFlags
	payload = p.Payload(data)
	now := s.ps.e.opts.Clock().UnixNano()
	tcp := data[p.L4Off:]
	seq := binary.BigEndian.Uint32(tcp[4:8])
	if f = s.tcp.Get(k); f != nil && f.Settled(seq) && flags&(stream.FlagSYN|stream.FlagRST) == 0 {
		return s.tcp.Add(k, stream.Segment{}, now), flags, payload // nothing to place: no checksum to verify
	}
	seg := stream.Segment{Seq: seq, Flags: flags, Urgent: binary.BigEndian.Uint16(tcp[18:20]), Payload: payload}
	if len(payload) > 0 && flags&stream.FlagSYN == 0 {
		seg.BadChecksum = !packet.VerifyChecksums(p, data) && !packet.ChecksumPending(p, data)
	}
	return s.tcp.Add(k, seg, now), flags, payload
}

// tlsHello is stream.tls_hello(pkt).
func (s *streamState) tlsHello(L *lua.LState) int {
	c := s.packetArg(L, "stream.tls_hello")
	if c.Parsed().Proto == packet.ProtoUDP {
		return s.quicHello(L, c)
	}
	f, flags, payload := s.tcpFlow(c)
	if f == nil {
		return failure(L, "no stream")
	}
	if f.Done {
		if !f.Changed {
			return pushKept(L, f.Result)
		}
		s.tcp.Reopen(f) // bytes that differ from those read: a fake came first
	}
	if flags&stream.FlagSYN != 0 {
		// SYN data is not part of the stream; a TCP Fast Open hello is
		// read on its own.
		if len(payload) > 0 && s.readHellos(L, [][]byte{payload}, true) {
			return 1
		}
		return failure(L, "more")
	}
	return s.flowHello(L, s.tcp, f, false)
}

// flowHello reads the hello from f's readings (bare: handshake messages
// without records, as QUIC carries them) and pushes it, "more", or the
// reason; a complete or failed flow is finished.
func (s *streamState) flowHello(L *lua.LState, t *stream.Table, f *stream.Flow, bare bool) int {
	if f.Contiguous() == 0 {
		return failure(L, "more")
	}
	readings := make([][]byte, f.Variants())
	for i := range readings {
		readings[i] = t.Reading(f, i)
		if len(readings) > 1 {
			readings[i] = append([]byte(nil), readings[i]...) // Reading reuses one buffer
		}
	}
	full := t.Full(f)
	f.Changed = false
	res, pending := s.hellos(L, readings, full, f.Ambiguous, bare)
	if pending && !full {
		if tb, ok := res.(*lua.LTable); ok {
			L.Push(tb) // one reading complete, another not yet: decide now, again later
			return 1
		}
		return failure(L, "more")
	}
	if _, ok := res.(*lua.LTable); ok {
		t.Finish(f, res)
	} else {
		t.Fail(f, res)
	}
	return pushKept(L, res)
}

// readHellos parses one-off readings (SYN data) and pushes a hello when
// one is complete.
func (s *streamState) readHellos(L *lua.LState, readings [][]byte, full bool) bool {
	res, _ := s.hellos(L, readings, full, false, false)
	if t, ok := res.(*lua.LTable); ok {
		L.Push(t)
		return true
	}
	return false
}

// hellos parses each reading. res is the hello table when at least one
// reading holds a complete ClientHello, else the reason of the first
// reading (a string); pending reports readings still incomplete.
func (s *streamState) hellos(L *lua.LState, readings [][]byte, full, ambiguous, bare bool) (res any, pending bool) {
	var t, names *lua.LTable
	seen := map[lua.LString]bool{}
	reason := "more"
	for i, b := range readings {
		var err error
		if bare {
			err = tlshello.ParseMessage(b, &s.hello)
		} else {
			s.helloBuf, err = tlshello.ParseRecords(b, &s.hello, s.helloBuf)
		}
		h := &s.hello
		switch {
		case err == nil:
		case err == tlshello.ErrTruncated && full && h.SNI != nil:
			// The flow's limit reached with the name read: as good as
			// complete.
		case err == tlshello.ErrTruncated && !full:
			pending = true
			continue
		default:
			if i == 0 {
				reason = err.(*tlshello.Error).Reason
				if err == tlshello.ErrTruncated {
					reason = "too long"
				}
			}
			continue
		}
		if t == nil {
			t, names = s.helloTable(L, h)
		}
		if h.SNI != nil {
			if n := hostName(h.SNI); !seen[n] {
				seen[n] = true
				names.Append(n)
				if t.RawGetString("sni") == lua.LNil {
					t.RawSetString("sni", n)
				}
			}
		}
	}
	if t == nil {
		return reason, pending
	}
	t.RawSetString("readings", lua.LNumber(len(readings)))
	t.RawSetString("ambiguous", lua.LBool(ambiguous))
	return t, pending
}

// helloTable is the Lua table of a hello (without its names).
func (s *streamState) helloTable(L *lua.LState, h *tlshello.Hello) (t, names *lua.LTable) {
	t = L.CreateTable(0, 8)
	helloFields(L, t, h)
	names = L.NewTable()
	t.RawSetString("names", names)
	return t, names
}

// pushKept pushes a kept result: a table, or nil and a reason.
func pushKept(L *lua.LState, res any) int {
	if t, ok := res.(*lua.LTable); ok {
		L.Push(t)
		return 1
	}
	r, _ := res.(string)
	return failure(L, r)
}

package engine

import (
	"hash/maphash"

	lua "github.com/luafw/luafw/lua"

	"github.com/luafw/luafw/host/quic"
	"github.com/luafw/luafw/host/stream"
)

// quicHello is stream.tls_hello(pkt) for a UDP packet: the client Initial
// packets of the datagram are decrypted (package quic) and their CRYPTO
// frames placed by offset in the flow of their addresses, ports and
// destination connection ID, so that a hello spread over several Initials,
// its frames in any order, is read whole. A packet that is not a client
// Initial gives nil and "not quic".
func (s *streamState) quicHello(L *lua.LState, c *Ctx) int {
	p := c.Parsed()
	if p.PayloadOff < 0 || p.NonFirstFragment {
		return failure(L, "not quic")
	}
	d := p.Payload(c.pkt.Data)
	if len(d) < 7 || d[0]&0x80 == 0 {
		return failure(L, "not quic")
	}
	if s.udp == nil {
		s.udp = stream.NewTable(s.lim, s.counters())
	}
	now := s.ps.e.opts.Clock().UnixNano()
	var f *stream.Flow
	var k stream.Key
	reason := "not quic"
	for len(d) > 0 {
		plain, h, rest, err := quic.Open(d, s.quicBuf[:0])
		if err != nil {
			if err == quic.ErrDecrypt {
				reason = "decryption failed"
			}
			break
		}
		s.quicBuf = plain
		k = stream.Key{Src: p.Src, Dst: p.Dst, SPort: p.SrcPort, DPort: p.DstPort, Conn: maphash.Bytes(s.seed, h.DCID)}
		// The crypto stream starts at offset 0: a SYN one before it.
		f = s.udp.Add(k, stream.Segment{Seq: ^uint32(0), Flags: stream.FlagSYN}, now)
		err = quic.Frames(plain, func(off uint64, data []byte) {
			if off < 1<<20 {
				f = s.udp.Add(k, stream.Segment{Seq: uint32(off), Payload: data}, now)
			}
		})
		if err != nil {
			break
		}
		d = rest
	}
	if f == nil {
		return failure(L, reason)
	}
	if f.Done {
		if !f.Changed {
			return pushKept(L, f.Result)
		}
		s.udp.Reopen(f)
	}
	return s.flowHello(L, s.udp, f, true)
}

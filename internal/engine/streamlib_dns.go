package engine

import (
	"bytes"
	"encoding/binary"

	lua "github.com/luafw/luafw/lua"

	"github.com/luafw/luafw/host/dnsmsg"
)

// dns is stream.dns(pkt): the DNS messages of a DNS-over-TCP flow (RFC 1035
// section 4.2.2: each a 2-byte length, then the message) that this segment
// completed, as a list of the tables dns.parse returns ({malformed =
// reason} for a message that does not parse), or nil and "more". Messages
// may be split anywhere and pipelined; each is returned once. The flow's
// byte limit bounds one message and what is held unread, not the flow.
func (s *streamState) dns(L *lua.LState) int {
	c := s.packetArg(L, "stream.dns")
	f, _, _ := s.tcpFlow(c)
	if f == nil {
		return failure(L, "no stream")
	}
	if f.Done {
		return pushKept(L, f.Result)
	}
	var out *lua.LTable
	var seen [][]byte
	add := func(msg []byte) {
		for _, o := range seen {
			if bytes.Equal(o, msg) {
				return
			}
		}
		seen = append(seen, msg)
		if out == nil {
			out = L.NewTable()
		}
		var m dnsmsg.Msg
		if err := m.Parse(msg); err != nil {
			t := L.NewTable()
			t.RawSetString("malformed", lua.LString(err.(*dnsmsg.Error).Reason))
			out.Append(t)
			return
		}
		out.Append(dnsTable(L, &m))
	}
	n := f.Variants()
	for i := 0; i < n; i++ {
		b := s.tcp.Reading(f, i)
		if n > 1 {
			b = append([]byte(nil), b...)
		}
		pos := 0
		for len(b)-pos >= 2 {
			l := int(binary.BigEndian.Uint16(b[pos:]))
			if len(b)-pos-2 < l {
				break
			}
			add(b[pos+2 : pos+2+l])
			pos += 2 + l
		}
		if n == 1 {
			s.tcp.Consume(f, pos) // one reading: read past what was returned
		}
	}
	if s.tcp.Full(f) { // one message longer than the limit, or readings that disagree
		s.tcp.Finish(f, "too long")
	}
	if out == nil {
		return failure(L, "more")
	}
	L.Push(out)
	return 1
}

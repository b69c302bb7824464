package engine

import (
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
	st, _ := f.Result.(*dnsSeen)
	if st == nil {
		st = &dnsSeen{}
		f.Result = st
	}
	// Read past what the previous call returned, once past half the limit:
	// bytes stay one call longer, so a fake read first is still there to
	// compare with the real bytes after it.
	if f.Variants() == 1 && st.readTo > 0 && f.Contiguous() > s.tcp.Limits().Bytes/2 {
		s.tcp.Consume(f, st.readTo)
		st.shift(st.readTo)
	}
	f.Changed = false
	var out *lua.LTable
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
			if msg := b[pos+2 : pos+2+l]; st.first(pos, msg) {
				if out == nil {
					out = L.NewTable()
				}
				out.Append(dnsMessage(L, msg))
			}
			pos += 2 + l
		}
		if i == 0 {
			st.readTo = pos
		}
	}
	if s.tcp.Full(f) && st.readTo == 0 { // one message longer than the limit
		s.tcp.Finish(f, "too long")
	}
	if out == nil {
		return failure(L, "more")
	}
	L.Push(out)
	return 1
}

// dnsSeen is what stream.dns returned of a flow: each message by its
// offset and a hash of its bytes, and the end of the last whole message
// of the first reading.
type dnsSeen struct {
	seen   []seenMsg
	readTo int
}

type seenMsg struct {
	off int
	sum uint64
}

// maxSeen bounds the messages remembered per flow (a 16 KiB window holds
// at most about 1,200).
const maxSeen = 2048

// first reports whether the message at off is new, and remembers it.
func (d *dnsSeen) first(off int, msg []byte) bool {
	sum := uint64(14695981039346656037)
	for _, c := range msg {
		sum = (sum ^ uint64(c)) * 1099511628211
	}
	for _, m := range d.seen {
		if m.off == off && m.sum == sum {
			return false
		}
	}
	if len(d.seen) >= maxSeen {
		d.seen = d.seen[:copy(d.seen, d.seen[maxSeen/2:])]
	}
	d.seen = append(d.seen, seenMsg{off, sum})
	return true
}

// shift forgets the messages before n and moves the others back by n.
func (d *dnsSeen) shift(n int) {
	out := d.seen[:0]
	for _, m := range d.seen {
		if m.off >= n {
			m.off -= n
			out = append(out, m)
		}
	}
	d.seen, d.readTo = out, 0
}

// dnsMessage is a message's table, or {malformed = reason}.
func dnsMessage(L *lua.LState, msg []byte) *lua.LTable {
	var m dnsmsg.Msg
	if err := m.Parse(msg); err != nil {
		t := L.NewTable()
		t.RawSetString("malformed", lua.LString(err.(*dnsmsg.Error).Reason))
		return t
	}
	return dnsTable(L, &m)
}

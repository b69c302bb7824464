package observe

import (
	"encoding/json"
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/luafw/luafw/host/packet"
	"github.com/luafw/luafw/internal/engine"
)

// Event is one decision as the events file records it. Its JSON field
// names are documented in docs/operating.md ("Decision events").
type Event struct {
	Time         time.Time
	Hook         engine.Hook
	Segment      string
	Src, Dst     netip.Addr
	Proto        uint8
	SPort, DPort uint16
	ICMPType     uint8
	ICMPCode     uint8
	Len          int
	Plugin       string // "" when no callback decided (a default accept)
	Callback     string
	Verdict      engine.Verdict
	Mark         uint32
	CTState      engine.CTState
	CTMark       uint32
	CTMarkKnown  bool
	CaptureBy    string
}

// Record is one line of the events file as a reader decodes it: every
// field name a line may carry (docs/operating.md, "Decision events").
type Record struct {
	Type       string  `json:"type"` // decision or suppressed
	Time       string  `json:"time"`
	Hook       string  `json:"hook,omitempty"`
	Segment    string  `json:"segment,omitempty"`
	Src        string  `json:"src,omitempty"`
	Dst        string  `json:"dst,omitempty"`
	Proto      string  `json:"proto,omitempty"`
	SPort      int     `json:"sport,omitempty"`
	DPort      int     `json:"dport,omitempty"`
	ICMPType   *int    `json:"icmp_type,omitempty"`
	ICMPCode   *int    `json:"icmp_code,omitempty"`
	Len        int     `json:"len,omitempty"`
	Plugin     *string `json:"plugin,omitempty"` // null when no callback decided
	Callback   *string `json:"callback,omitempty"`
	Verdict    string  `json:"verdict,omitempty"`
	Mark       uint32  `json:"mark"`
	CTState    string  `json:"ct_state,omitempty"`
	CTMark     *uint32 `json:"ct_mark,omitempty"`
	CaptureBy  string  `json:"capture_by,omitempty"`
	Suppressed uint64  `json:"suppressed,omitempty"` // type suppressed: over the rate limit since the last such line
	Lost       uint64  `json:"lost,omitempty"`       // type suppressed: the writer was behind
}

// newEvent fills an event from a decided packet.
func newEvent(now time.Time, seg string, p *engine.Packet, d *engine.Decision) Event {
	var h packet.Parsed
	h.Decode(p.Data)
	e := Event{Time: now, Hook: p.Hook, Segment: seg, Src: h.Src, Dst: h.Dst, Proto: h.Proto,
		SPort: h.SrcPort, DPort: h.DstPort, Len: len(p.Data), Plugin: d.By, Callback: d.ByName,
		Verdict: d.Verdict, Mark: d.Mark, CTState: p.CTState, CTMark: p.CTMark, CTMarkKnown: p.CTMarkKnown,
		CaptureBy: d.CaptureBy}
	if h.Proto == packet.ProtoICMP || h.Proto == packet.ProtoICMPv6 {
		e.ICMPType, e.ICMPCode = h.ICMPType, h.ICMPCode
	}
	if h.Len > 0 {
		e.Len = h.Len
	}
	return e
}

// AppendJSON appends the event as one JSON line.
func (e *Event) AppendJSON(b []byte) []byte {
	b = append(b, `{"type":"decision","time":"`...)
	b = e.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","hook":`...)
	b = appendString(b, e.Hook.String())
	b = append(b, `,"segment":`...)
	b = appendString(b, e.Segment)
	if e.Src.IsValid() {
		b = append(b, `,"src":"`...)
		b = e.Src.AppendTo(b)
		b = append(b, `","dst":"`...)
		b = e.Dst.AppendTo(b)
		b = append(b, `","proto":`...)
		b = appendString(b, packet.ProtoName(e.Proto))
		switch {
		case e.Proto == packet.ProtoICMP || e.Proto == packet.ProtoICMPv6:
			b = appendNum(b, "icmp_type", uint64(e.ICMPType))
			b = appendNum(b, "icmp_code", uint64(e.ICMPCode))
		case e.SPort != 0 || e.DPort != 0:
			b = appendNum(b, "sport", uint64(e.SPort))
			b = appendNum(b, "dport", uint64(e.DPort))
		}
	}
	b = appendNum(b, "len", uint64(e.Len))
	b = append(b, `,"plugin":`...)
	b = appendStringOrNull(b, e.Plugin)
	b = append(b, `,"callback":`...)
	b = appendStringOrNull(b, e.Callback)
	b = append(b, `,"verdict":`...)
	b = appendString(b, e.Verdict.String())
	b = appendNum(b, "mark", uint64(e.Mark))
	if e.CTState != engine.CTUnknown {
		b = append(b, `,"ct_state":`...)
		b = appendString(b, e.CTState.String())
	}
	if e.CTMarkKnown {
		b = appendNum(b, "ct_mark", uint64(e.CTMark))
	}
	if e.CaptureBy != "" {
		b = append(b, `,"capture_by":`...)
		b = appendString(b, e.CaptureBy)
	}
	return append(b, "}\n"...)
}

// appendSuppressed appends the periodic record of events not written.
func appendSuppressed(b []byte, now time.Time, suppressed, lost uint64) []byte {
	b = append(b, `{"type":"suppressed","time":"`...)
	b = now.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = appendNum(b, "suppressed", suppressed)
	b = appendNum(b, "lost", lost)
	return append(b, "}\n"...)
}

func appendNum(b []byte, key string, n uint64) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return strconv.AppendUint(b, n, 10)
}

func appendStringOrNull(b []byte, s string) []byte {
	if s == "" {
		return append(b, "null"...)
	}
	return appendString(b, s)
}

// appendString appends s as a JSON string; plain ASCII (all hook, verdict
// and most plugin names) is copied, anything else goes through json.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

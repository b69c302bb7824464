package observe

import (
	"strings"
	"sync"
	"time"

	"github.com/luafw/luafw/internal/engine"
	"github.com/luafw/luafw/pcap"
)

// capRec is one packet waiting for the capture writer. data is a pooled
// buffer the writer gives back.
type capRec struct {
	time      time.Time
	data      *[]byte
	origLen   int
	hook      engine.Hook
	segment   string
	plugin    string
	callback  string
	verdict   engine.Verdict
	captureBy string
}

// bufPool holds packet copies; sized for a full-size packet.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// Comment is the pcapng packet comment for a captured packet, e.g.
// "plugin=no_telnet callback=forward hook=forward verdict=drop
// segment=forward@0" (plugin=- callback=- when no callback decided), with
// " capture=PLUGIN" when a script asked for the packet with pkt:capture().
func Comment(plugin, callback string, hook engine.Hook, verdict engine.Verdict, segment, captureBy string) string {
	var sb strings.Builder
	sb.Grow(96)
	sb.WriteString("plugin=")
	sb.WriteString(orDash(plugin))
	sb.WriteString(" callback=")
	sb.WriteString(orDash(callback))
	sb.WriteString(" hook=")
	sb.WriteString(hook.String())
	sb.WriteString(" verdict=")
	sb.WriteString(verdict.String())
	sb.WriteString(" segment=")
	sb.WriteString(segment)
	if captureBy != "" {
		sb.WriteString(" capture=")
		sb.WriteString(captureBy)
	}
	return sb.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func encodeCapture(b []byte, r *capRec) []byte {
	b = pcap.AppendNGPacket(b, r.time, *r.data, r.origLen,
		Comment(r.plugin, r.callback, r.hook, r.verdict, r.segment, r.captureBy))
	bufPool.Put(r.data)
	r.data = nil
	return b
}

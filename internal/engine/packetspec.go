package engine

import (
	"fmt"
	"math"
	"net/netip"
	"strings"

	"github.com/luafw/luafw/host/packet"
	lua "github.com/luafw/luafw/lua"
)

// The one reader of a Lua table of packet fields (packet.tcp{src = ...}),
// shared by the packet builders scripts call (packetlib.go, for fw.send and
// replies) and by `luafw test`'s packet constructors (plugintest).

// BuilderFields are the header fields each packet builder takes.
var BuilderFields = map[string][]string{
	"tcp":    {"src", "dst", "sport", "dport", "flags", "seq", "ack", "ttl", "payload"},
	"udp":    {"src", "dst", "sport", "dport", "ttl", "payload"},
	"icmp":   {"src", "dst", "type", "code", "id", "seq", "ttl", "payload"},
	"icmpv6": {"src", "dst", "type", "code", "id", "seq", "ttl", "payload"},
}

// SpecDefaults are the values a missing field takes. Without them src and
// dst are required and ports default to 0.
type SpecDefaults struct {
	Src4, Dst4, Src6, Dst6 string
	SPort, TCPDPort        uint64
	UDPDPort               uint64
}

// FieldReader reads typed packet fields, keeping the first error in Err.
type FieldReader struct {
	Kind   string // tcp, udp, icmp, icmpv6; in error messages
	Fields map[string]lua.LValue
	Err    error
}

// TableFields returns a table's fields by name; a key that is not a string
// is named "[key]", so that it is reported as an unknown field.
func TableFields(t *lua.LTable) map[string]lua.LValue {
	m := map[string]lua.LValue{}
	t.ForEach(func(k, v lua.LValue) {
		if s, ok := k.(lua.LString); ok {
			m[string(s)] = v
		} else {
			m[fmt.Sprintf("[%s]", k.String())] = v
		}
	})
	return m
}

// Fail records an error unless one is recorded already.
func (f *FieldReader) Fail(format string, args ...any) {
	if f.Err == nil {
		f.Err = fmt.Errorf("packet.%s: "+format, append([]any{f.Kind}, args...)...)
	}
}

// Str reads a string field, def when it is absent.
func (f *FieldReader) Str(name, def string) string {
	v, ok := f.Fields[name]
	if !ok {
		return def
	}
	s, ok := v.(lua.LString)
	if !ok {
		f.Fail("%s must be a string, not %s", name, v.Type())
		return def
	}
	return string(s)
}

// Uint reads an integer field in 0..max, def when it is absent.
func (f *FieldReader) Uint(name string, def, max uint64) uint64 {
	v, ok := f.Fields[name]
	if !ok {
		return def
	}
	n, ok := v.(lua.LNumber)
	if !ok || float64(n) != math.Trunc(float64(n)) || n < 0 || float64(n) > float64(max) {
		f.Fail("%s must be an integer 0..%d, not %s", name, max, v.String())
		return def
	}
	return uint64(n)
}

// Addr reads an IP address field, def when it is absent.
func (f *FieldReader) Addr(name, def string) netip.Addr {
	s := f.Str(name, def)
	a, err := netip.ParseAddr(s)
	if err != nil {
		f.Fail("%s: not an IP address: %q", name, s)
		return netip.Addr{}
	}
	return a.Unmap()
}

// Flags reads TCP flags: letters such as "SA", or a number.
func (f *FieldReader) Flags() uint8 {
	v, ok := f.Fields["flags"]
	if !ok {
		return 0
	}
	if _, ok := v.(lua.LNumber); ok {
		return uint8(f.Uint("flags", 0, 255))
	}
	s, ok := v.(lua.LString)
	if !ok {
		f.Fail("flags must be letters such as \"SA\" or a number, not %s", v.Type())
		return 0
	}
	var out uint8
	for _, r := range string(s) {
		bit, ok := packet.TCPFlagByLetter(r)
		if !ok {
			f.Fail("flags: unknown flag %q in %q (want %s)", r, string(s), packet.TCPFlagLetterList)
			return 0
		}
		out |= bit
	}
	return out
}

// Spec reads the header fields of a tcp, udp, icmp or icmpv6 packet.
func (f *FieldReader) Spec(d *SpecDefaults) (packet.Spec, error) {
	var dd SpecDefaults
	if d != nil {
		dd = *d
	}
	v6 := f.Kind == "icmpv6"
	for _, k := range []string{"src", "dst"} {
		if s, ok := f.Fields[k].(lua.LString); ok && strings.Contains(string(s), ":") {
			v6 = true
		}
	}
	src, dst := dd.Src4, dd.Dst4
	if v6 {
		src, dst = dd.Src6, dd.Dst6
	}
	s := packet.Spec{
		Src: f.Addr("src", src), Dst: f.Addr("dst", dst),
		TTL:     uint8(f.Uint("ttl", 0, 255)),
		Payload: []byte(f.Str("payload", "")),
	}
	switch f.Kind {
	case "tcp", "udp":
		dport := dd.TCPDPort
		s.Proto = packet.ProtoTCP
		if f.Kind == "udp" {
			s.Proto, dport = packet.ProtoUDP, dd.UDPDPort
		}
		s.SrcPort = uint16(f.Uint("sport", dd.SPort, 65535))
		s.DstPort = uint16(f.Uint("dport", dport, 65535))
		if f.Kind == "tcp" {
			s.TCPFlags = f.Flags()
			s.Seq = uint32(f.Uint("seq", 0, math.MaxUint32))
			s.Ack = uint32(f.Uint("ack", 0, math.MaxUint32))
		}
	case "icmp", "icmpv6":
		s.Proto, s.ICMPType = packet.ProtoICMP, 8
		if f.Kind == "icmpv6" {
			s.Proto, s.ICMPType = packet.ProtoICMPv6, 128
		}
		s.ICMPType = uint8(f.Uint("type", uint64(s.ICMPType), 255))
		s.ICMPCode = uint8(f.Uint("code", 0, 255))
		s.Seq = uint32(f.Uint("id", 0, 65535))<<16 | uint32(f.Uint("seq", 0, 65535))
	}
	if f.Err == nil && s.Src.Is4() != s.Dst.Is4() {
		f.Fail("src %s and dst %s are of different address families", s.Src, s.Dst)
	}
	if f.Err == nil && f.Kind == "icmp" && !s.Src.Is4() {
		f.Fail("ICMP needs IPv4 addresses (use packet.icmpv6)")
	}
	if f.Err == nil && f.Kind == "icmpv6" && s.Src.Is4() {
		f.Fail("ICMPv6 needs IPv6 addresses (use packet.icmp)")
	}
	return s, f.Err
}

package plugintest

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strings"

	lua "github.com/luafw/luafw/lua"

	"github.com/luafw/luafw/host/packet"
	"github.com/luafw/luafw/internal/engine"
)

// Default addresses and ports of the packet constructors: documentation
// ranges (RFC 5737, RFC 3849), so that a test never names a real engine.
const (
	defaultSrc4  = "192.0.2.1"
	defaultDst4  = "198.51.100.1"
	defaultSrc6  = "2001:db8::1"
	defaultDst6  = "2001:db8::2"
	defaultSport = 40000
)

// testPacket is what packet.tcp{...} and friends return to a test: the
// bytes, plus what the kernel would tell the engine beside them.
type testPacket struct {
	kind   string                // tcp, udp, icmp, icmpv6, raw
	fields map[string]lua.LValue // as the test gave them, for :with and printing
	data   []byte
	ctx    pktContext
}

// pktContext is what a packet carries that is not in its bytes.
type pktContext struct {
	hook      engine.Hook
	hasHook   bool
	indev     string
	outdev    string
	mark      uint32
	uid       uint32
	gid       uint32
	hasUID    bool
	ctState   engine.CTState
	ctMark    uint32
	ctKnown   bool   // ct.mark was given
	ctPackets uint64 // ct.packets: the connection's original-direction count
	tags      []string
}

// Which fields each constructor takes, besides the context fields.
var (
	contextFields = []string{"hook", "indev", "outdev", "mark", "uid", "gid", "ct", "tags"}
	kindFields    = map[string][]string{
		"tcp":    {"src", "dst", "sport", "dport", "flags", "seq", "ack", "ttl", "payload"},
		"udp":    {"src", "dst", "sport", "dport", "ttl", "payload"},
		"icmp":   {"src", "dst", "type", "code", "id", "seq", "ttl", "payload"},
		"icmpv6": {"src", "dst", "type", "code", "id", "seq", "ttl", "payload"},
		"raw":    {"data"},
	}
)

// newTestPacket builds a packet of kind from the fields a test gave.
func newTestPacket(kind string, fields map[string]lua.LValue) (*testPacket, error) {
	allowed := append(slices.Clone(kindFields[kind]), contextFields...)
	for k := range fields {
		if !slices.Contains(allowed, k) {
			return nil, fmt.Errorf("packet.%s: unknown field %q (want %s)", kind, k, strings.Join(allowed, ", "))
		}
	}
	p := &testPacket{kind: kind, fields: fields}
	f := fieldReader{kind: kind, fields: fields}
	if kind == "raw" {
		p.data = []byte(f.str("data", ""))
	} else {
		spec, err := f.spec()
		if err != nil {
			return nil, err
		}
		if p.data, err = packet.Build(spec); err != nil {
			return nil, fmt.Errorf("packet.%s: %w", kind, err)
		}
	}
	if err := f.context(&p.ctx); err != nil {
		return nil, err
	}
	return p, f.err
}

// with returns a copy of p with some fields changed.
func (p *testPacket) with(changes map[string]lua.LValue) (*testPacket, error) {
	fields := make(map[string]lua.LValue, len(p.fields)+len(changes))
	for k, v := range p.fields {
		fields[k] = v
	}
	for k, v := range changes {
		if v == lua.LNil {
			delete(fields, k)
		} else {
			fields[k] = v
		}
	}
	return newTestPacket(p.kind, fields)
}

func (p *testPacket) String() string {
	var pp packet.Parsed
	pp.Decode(p.data)
	if p.kind == "raw" || pp.Family == 0 {
		return fmt.Sprintf("packet.raw(%d bytes)", len(p.data))
	}
	switch p.kind {
	case "tcp":
		return fmt.Sprintf("packet.tcp %s > %s flags=%s", netip.AddrPortFrom(pp.Src, pp.SrcPort), netip.AddrPortFrom(pp.Dst, pp.DstPort), flagLetters(pp.TCPFlags))
	case "udp":
		return fmt.Sprintf("packet.udp %s > %s", netip.AddrPortFrom(pp.Src, pp.SrcPort), netip.AddrPortFrom(pp.Dst, pp.DstPort))
	}
	return fmt.Sprintf("packet.%s %s > %s type=%d code=%d", p.kind, pp.Src, pp.Dst, pp.ICMPType, pp.ICMPCode)
}

func flagLetters(f uint8) string {
	var b strings.Builder
	for _, r := range "SAFRPUEC" {
		if bit, _ := packet.TCPFlagByLetter(r); f&bit != 0 {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// hostPacket returns the engine's view of p at hook.
func (p *testPacket) hostPacket(hook engine.Hook) *engine.Packet {
	c := &p.ctx
	return &engine.Packet{
		Hook: hook, Data: p.data, InDev: c.indev, OutDev: c.outdev, Mark: c.mark,
		UID: c.uid, GID: c.gid, HasUID: c.hasUID,
		CTState: c.ctState, CTMark: c.ctMark, CTMarkKnown: c.ctKnown, CTPackets: c.ctPackets,
		Tags: slices.Clone(c.tags),
	}
}

// fieldReader reads typed fields, keeping the first error.
type fieldReader struct {
	kind   string
	fields map[string]lua.LValue
	err    error
}

func (f *fieldReader) fail(format string, args ...any) {
	if f.err == nil {
		f.err = fmt.Errorf("packet.%s: "+format, append([]any{f.kind}, args...)...)
	}
}

func (f *fieldReader) str(name, def string) string {
	v, ok := f.fields[name]
	if !ok {
		return def
	}
	s, ok := v.(lua.LString)
	if !ok {
		f.fail("%s must be a string, not %s", name, v.Type())
		return def
	}
	return string(s)
}

func (f *fieldReader) uint(name string, def, max uint64) uint64 {
	v, ok := f.fields[name]
	if !ok {
		return def
	}
	n, ok := v.(lua.LNumber)
	if !ok || float64(n) != math.Trunc(float64(n)) || n < 0 || float64(n) > float64(max) {
		f.fail("%s must be an integer 0..%d, not %s", name, max, v.String())
		return def
	}
	return uint64(n)
}

func (f *fieldReader) addr(name, def string) netip.Addr {
	s := f.str(name, def)
	a, err := netip.ParseAddr(s)
	if err != nil {
		f.fail("%s: not an IP address: %q", name, s)
		return netip.Addr{}
	}
	return a.Unmap()
}

// spec reads the header fields of a tcp, udp, icmp or icmpv6 packet.
func (f *fieldReader) spec() (packet.Spec, error) {
	v6 := f.kind == "icmpv6"
	for _, k := range []string{"src", "dst"} {
		if s, ok := f.fields[k].(lua.LString); ok && strings.Contains(string(s), ":") {
			v6 = true
		}
	}
	src, dst := defaultSrc4, defaultDst4
	if v6 {
		src, dst = defaultSrc6, defaultDst6
	}
	s := packet.Spec{
		Src: f.addr("src", src), Dst: f.addr("dst", dst),
		TTL:     uint8(f.uint("ttl", 0, 255)),
		Payload: []byte(f.str("payload", "")),
	}
	switch f.kind {
	case "tcp", "udp":
		s.Proto = packet.ProtoTCP
		dport := uint64(80)
		if f.kind == "udp" {
			s.Proto, dport = packet.ProtoUDP, 53
		}
		s.SrcPort = uint16(f.uint("sport", defaultSport, 65535))
		s.DstPort = uint16(f.uint("dport", dport, 65535))
		if f.kind == "tcp" {
			s.TCPFlags = f.flags()
			s.Seq = uint32(f.uint("seq", 0, math.MaxUint32))
			s.Ack = uint32(f.uint("ack", 0, math.MaxUint32))
		}
	case "icmp", "icmpv6":
		s.Proto, s.ICMPType = packet.ProtoICMP, 8
		if f.kind == "icmpv6" {
			s.Proto, s.ICMPType = packet.ProtoICMPv6, 128
		}
		s.ICMPType = uint8(f.uint("type", uint64(s.ICMPType), 255))
		s.ICMPCode = uint8(f.uint("code", 0, 255))
		s.Seq = uint32(f.uint("id", 0, 65535))<<16 | uint32(f.uint("seq", 0, 65535))
	}
	if f.err == nil && s.Src.Is4() != s.Dst.Is4() {
		f.fail("src %s and dst %s are of different address families", s.Src, s.Dst)
	}
	if f.err == nil && f.kind == "icmp" && !s.Src.Is4() {
		f.fail("ICMP needs IPv4 addresses (use packet.icmpv6)")
	}
	if f.err == nil && f.kind == "icmpv6" && s.Src.Is4() {
		f.fail("ICMPv6 needs IPv6 addresses (use packet.icmp)")
	}
	return s, f.err
}

// flags reads TCP flags: letters such as "SA", or a number.
func (f *fieldReader) flags() uint8 {
	v, ok := f.fields["flags"]
	if !ok {
		return 0
	}
	if _, ok := v.(lua.LNumber); ok {
		return uint8(f.uint("flags", 0, 255))
	}
	s, ok := v.(lua.LString)
	if !ok {
		f.fail("flags must be letters such as \"SA\" or a number, not %s", v.Type())
		return 0
	}
	var out uint8
	for _, r := range string(s) {
		bit, ok := packet.TCPFlagByLetter(r)
		if !ok {
			f.fail("flags: unknown flag %q in %q (want %s)", r, string(s), packet.TCPFlagLetterList)
			return 0
		}
		out |= bit
	}
	return out
}

// context reads the fields that are not in the bytes.
func (f *fieldReader) context(c *pktContext) error {
	if _, ok := f.fields["hook"]; ok {
		h, err := engine.ParseHook(f.str("hook", ""))
		if err != nil {
			f.fail("hook: %v", err)
		}
		c.hook, c.hasHook = h, true
	}
	c.indev = f.str("indev", "")
	c.outdev = f.str("outdev", "")
	c.mark = uint32(f.uint("mark", 0, math.MaxUint32))
	_, hasUID := f.fields["uid"]
	_, hasGID := f.fields["gid"]
	c.uid = uint32(f.uint("uid", 0, math.MaxUint32))
	c.gid = uint32(f.uint("gid", 0, math.MaxUint32))
	c.hasUID = hasUID || hasGID
	if v, ok := f.fields["ct"]; ok {
		t, ok := v.(*lua.LTable)
		if !ok {
			f.fail("ct must be a table such as {state = \"new\", mark = 5}, not %s", v.Type())
			return f.err
		}
		ct := fieldReader{kind: f.kind + " ct", fields: tableFields(t)}
		for k := range ct.fields {
			if k != "state" && k != "mark" && k != "packets" {
				f.fail("ct: unknown field %q (want state, mark, packets)", k)
			}
		}
		st, err := engine.ParseCTState(ct.str("state", ""))
		if err != nil {
			f.fail("ct.state: %v", err)
		}
		c.ctState = st
		_, c.ctKnown = ct.fields["mark"]
		c.ctMark = uint32(ct.uint("mark", 0, math.MaxUint32))
		c.ctPackets = uint64(ct.uint("packets", 0, math.MaxUint32))
		if ct.err != nil && f.err == nil {
			f.err = ct.err
		}
	}
	if v, ok := f.fields["tags"]; ok {
		t, ok := v.(*lua.LTable)
		if !ok {
			f.fail("tags must be a list of strings, not %s", v.Type())
			return f.err
		}
		for i := 1; i <= t.Len(); i++ {
			s, ok := t.RawGetInt(i).(lua.LString)
			if !ok {
				f.fail("tags must be a list of strings")
				break
			}
			c.tags = append(c.tags, string(s))
		}
	}
	return f.err
}

// tableFields returns a table's string-keyed fields.
func tableFields(t *lua.LTable) map[string]lua.LValue {
	m := map[string]lua.LValue{}
	t.ForEach(func(k, v lua.LValue) {
		if s, ok := k.(lua.LString); ok {
			m[string(s)] = v
		} else {
			m[fmt.Sprintf("[%s]", k.String())] = v // reported as an unknown field
		}
	})
	return m
}

// packetModule is the packet table of a test file.
func packetModule(L *lua.LState) *lua.LTable {
	mt := L.NewTypeMetatable("plugintest.packet")
	methods := map[string]*lua.LFunction{
		"with": L.NewFunction(func(L *lua.LState) int {
			p := checkPacket(L, 1)
			q, err := p.with(tableFields(L.CheckTable(2)))
			if err != nil {
				L.RaiseError("%v", err)
			}
			L.Push(wrapPacket(L, q))
			return 1
		}),
	}
	mt.RawSetString("__index", L.NewFunction(func(L *lua.LState) int {
		p := checkPacket(L, 1)
		key := L.CheckString(2)
		switch key {
		case "data":
			L.Push(lua.LString(p.data))
		case "len":
			L.Push(lua.LNumber(len(p.data)))
		case "kind":
			L.Push(lua.LString(p.kind))
		default:
			if m, ok := methods[key]; ok {
				L.Push(m)
			} else if v, ok := p.fields[key]; ok {
				L.Push(v)
			} else {
				L.Push(lua.LNil)
			}
		}
		return 1
	}))
	mt.RawSetString("__newindex", L.NewFunction(func(L *lua.LState) int {
		L.RaiseError("packets are read-only (assignment to %q): make a changed copy with p:with{%s = ...}", L.ToString(2), L.ToString(2))
		return 0
	}))
	mt.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LString(checkPacket(L, 1).String()))
		return 1
	}))

	m := L.NewTable()
	for _, kind := range []string{"tcp", "udp", "icmp", "icmpv6"} {
		m.RawSetString(kind, L.NewFunction(func(L *lua.LState) int {
			fields := map[string]lua.LValue{}
			if L.GetTop() >= 1 {
				fields = tableFields(L.CheckTable(1))
			}
			p, err := newTestPacket(kind, fields)
			if err != nil {
				L.RaiseError("%v", err)
			}
			L.Push(wrapPacket(L, p))
			return 1
		}))
	}
	m.RawSetString("raw", L.NewFunction(func(L *lua.LState) int {
		fields := map[string]lua.LValue{}
		if L.GetTop() >= 2 {
			fields = tableFields(L.CheckTable(2))
		}
		fields["data"] = lua.LString(L.CheckString(1))
		p, err := newTestPacket("raw", fields)
		if err != nil {
			L.RaiseError("%v", err)
		}
		L.Push(wrapPacket(L, p))
		return 1
	}))
	m.RawSetString("dns_query", L.NewFunction(func(L *lua.LState) int {
		name := L.CheckString(1)
		var qtype uint16 = 1
		switch L.Get(2).(type) {
		case *lua.LNilType:
		case lua.LNumber:
			n := L.CheckInt(2)
			if n < 0 || n > 0xffff {
				L.ArgError(2, "query type must be 0..65535")
			}
			qtype = uint16(n)
		default:
			t, err := DNSType(L.CheckString(2))
			if err != nil {
				L.ArgError(2, err.Error())
			}
			qtype = t
		}
		id := uint16(L.OptInt(3, 0x1234))
		b, err := DNSQuery(name, qtype, id)
		if err != nil {
			L.RaiseError("packet.dns_query: %v", err)
		}
		L.Push(lua.LString(b))
		return 1
	}))
	m.RawSetString("tls_client_hello", L.NewFunction(func(L *lua.LState) int {
		sni := L.OptString(1, "")
		var alpn []string
		if t, ok := L.Get(2).(*lua.LTable); ok {
			opts := tableFields(t)
			for k := range opts {
				if k != "alpn" {
					L.ArgError(2, fmt.Sprintf("unknown option %q (want alpn)", k))
				}
			}
			if list, ok := opts["alpn"].(*lua.LTable); ok {
				for i := 1; i <= list.Len(); i++ {
					alpn = append(alpn, lua.LVAsString(list.RawGetInt(i)))
				}
			}
		}
		b, err := TLSClientHello(sni, alpn)
		if err != nil {
			L.RaiseError("packet.tls_client_hello: %v", err)
		}
		L.Push(lua.LString(b))
		return 1
	}))
	return m
}

func wrapPacket(L *lua.LState, p *testPacket) *lua.LUserData {
	ud := L.NewUserData()
	ud.Value = p
	ud.Metatable = L.GetTypeMetatable("plugintest.packet")
	return ud
}

func checkPacket(L *lua.LState, n int) *testPacket {
	ud, ok := L.Get(n).(*lua.LUserData)
	if ok {
		if p, ok := ud.Value.(*testPacket); ok {
			return p
		}
	}
	L.ArgError(n, fmt.Sprintf("want a packet (packet.tcp{...}, packet.raw(bytes), ...), got %s", L.Get(n).Type()))
	return nil
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

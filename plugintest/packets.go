package plugintest

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strings"

	lua "github.com/luafw/luafw/lua"
	"github.com/luafw/luafw/netfilter"

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
	cgroup    string // the sending socket's cgroup (pkt.cgroup, match.cgroup)
	hasCgroup bool
	ctState   engine.CTState
	ctMark    uint32
	ctKnown   bool   // ct.mark was given
	ctPackets uint64 // ct.packets: the connection's original-direction count
	tags      []string
}

// Which fields each constructor takes, besides the context fields.
var (
	contextFields = []string{"hook", "indev", "outdev", "mark", "uid", "gid", "cgroup", "ct", "tags"}
	rawFields     = []string{"data"}
	testDefaults  = engine.SpecDefaults{Src4: defaultSrc4, Dst4: defaultDst4, Src6: defaultSrc6, Dst6: defaultDst6,
		SPort: defaultSport, TCPDPort: 80, UDPDPort: 53}
)

// kindFields are the header fields of each constructor.
func kindFields(kind string) []string {
	if kind == "raw" {
		return rawFields
	}
	return engine.BuilderFields[kind]
}

// newTestPacket builds a packet of kind from the fields a test gave.
func newTestPacket(kind string, fields map[string]lua.LValue) (*testPacket, error) {
	allowed := append(slices.Clone(kindFields(kind)), contextFields...)
	for k := range fields {
		if !slices.Contains(allowed, k) {
			return nil, fmt.Errorf("packet.%s: unknown field %q (want %s)", kind, k, strings.Join(allowed, ", "))
		}
	}
	p := &testPacket{kind: kind, fields: fields}
	f := &engine.FieldReader{Kind: kind, Fields: fields}
	if kind == "raw" {
		p.data = []byte(f.Str("data", ""))
	} else {
		spec, err := f.Spec(&testDefaults)
		if err != nil {
			return nil, err
		}
		if p.data, err = packet.Build(spec); err != nil {
			return nil, fmt.Errorf("packet.%s: %w", kind, err)
		}
	}
	if err := readContext(f, &p.ctx); err != nil {
		return nil, err
	}
	return p, f.Err
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
		UID: c.uid, GID: c.gid, HasUID: c.hasUID, Cgroup: c.cgroup, CgroupKnown: c.hasCgroup,
		CTState: c.ctState, CTMark: c.ctMark, CTMarkKnown: c.ctKnown, CTPackets: c.ctPackets,
		Tags: slices.Clone(c.tags),
	}
}

// readContext reads the fields that are not in the bytes.
func readContext(f *engine.FieldReader, c *pktContext) error {
	if _, ok := f.Fields["hook"]; ok {
		h, err := engine.ParseHook(f.Str("hook", ""))
		if err != nil {
			f.Fail("hook: %v", err)
		}
		c.hook, c.hasHook = h, true
	}
	c.indev = f.Str("indev", "")
	c.outdev = f.Str("outdev", "")
	c.mark = uint32(f.Uint("mark", 0, math.MaxUint32))
	_, hasUID := f.Fields["uid"]
	_, hasGID := f.Fields["gid"]
	c.uid = uint32(f.Uint("uid", 0, math.MaxUint32))
	c.gid = uint32(f.Uint("gid", 0, math.MaxUint32))
	c.hasUID = hasUID || hasGID
	if _, ok := f.Fields["cgroup"]; ok {
		p, _, err := netfilter.CheckCgroupPath(f.Str("cgroup", ""))
		if err != nil {
			f.Fail("cgroup: %v", err)
		}
		c.cgroup, c.hasCgroup = p, true
	}
	if v, ok := f.Fields["ct"]; ok {
		t, ok := v.(*lua.LTable)
		if !ok {
			f.Fail("ct must be a table such as {state = \"new\", mark = 5}, not %s", v.Type())
			return f.Err
		}
		ct := engine.FieldReader{Kind: f.Kind + " ct", Fields: engine.TableFields(t)}
		for k := range ct.Fields {
			if k != "state" && k != "mark" && k != "packets" {
				f.Fail("ct: unknown field %q (want state, mark, packets)", k)
			}
		}
		st, err := engine.ParseCTState(ct.Str("state", ""))
		if err != nil {
			f.Fail("ct.state: %v", err)
		}
		c.ctState = st
		_, c.ctKnown = ct.Fields["mark"]
		c.ctMark = uint32(ct.Uint("mark", 0, math.MaxUint32))
		c.ctPackets = uint64(ct.Uint("packets", 0, math.MaxUint32))
		if ct.Err != nil && f.Err == nil {
			f.Err = ct.Err
		}
	}
	if v, ok := f.Fields["tags"]; ok {
		t, ok := v.(*lua.LTable)
		if !ok {
			f.Fail("tags must be a list of strings, not %s", v.Type())
			return f.Err
		}
		for i := 1; i <= t.Len(); i++ {
			s, ok := t.RawGetInt(i).(lua.LString)
			if !ok {
				f.Fail("tags must be a list of strings")
				break
			}
			c.tags = append(c.tags, string(s))
		}
	}
	return f.Err
}

// packetModule is the packet table of a test file.
func packetModule(L *lua.LState) *lua.LTable {
	mt := L.NewTypeMetatable("plugintest.packet")
	methods := map[string]*lua.LFunction{
		"with": L.NewFunction(func(L *lua.LState) int {
			p := checkPacket(L, 1)
			q, err := p.with(engine.TableFields(L.CheckTable(2)))
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
				fields = engine.TableFields(L.CheckTable(1))
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
			fields = engine.TableFields(L.CheckTable(2))
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
	m.RawSetString("quic_initial", L.NewFunction(quicInitial)) // packets_quic.go
	m.RawSetString("tls_client_hello", L.NewFunction(func(L *lua.LState) int {
		sni := L.OptString(1, "")
		var alpn []string
		if t, ok := L.Get(2).(*lua.LTable); ok {
			opts := engine.TableFields(t)
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

package engine

import (
	"fmt"
	"math"
	"net/netip"
	"strings"

	lua "github.com/luafw/luafw/lua"

	"github.com/luafw/luafw/host/packet"
)

// Injection from Lua: fw.send(bytes [, {mark = n}]), pkt:reply_reset(),
// pkt:reply_icmp(type, code), pkt:reply_udp(payload), and the packet
// builders packet.tcp{...}, packet.udp{...}, packet.icmp{...},
// packet.icmpv6{...} that return bytes for fw.send. Like the rewrites, they
// return true, or false and a reason (rate limit, a packet of the wrong
// kind) rather than raising: those depend on traffic.

// fwSend is fw.send(bytes [, {mark = n}]).
func fwSend(L *lua.LState) int {
	ps := stateOf(L)
	data := []byte(L.CheckString(1))
	var mark uint32
	if L.GetTop() >= 2 && L.Get(2) != lua.LNil {
		opts := L.CheckTable(2)
		var bad string
		opts.ForEach(func(k, v lua.LValue) {
			if k.String() != "mark" && bad == "" {
				bad = k.String()
			}
		})
		if bad != "" {
			L.ArgError(2, fmt.Sprintf("unknown option %q (want mark)", bad))
		}
		if m := opts.RawGetString("mark"); m != lua.LNil {
			n, ok := m.(lua.LNumber)
			if !ok || float64(n) < 0 || float64(n) > math.MaxUint32 || float64(n) != math.Trunc(float64(n)) {
				L.ArgError(2, "mark must be an integer 0..0xffffffff")
			}
			mark = uint32(n)
		}
	}
	c := ps.callbackCtx(L, "fw.send")
	return pushResult(L, c.Send(data, mark))
}

// callbackCtx is the Ctx of the packet ps's callback is handling; it raises
// outside a callback (at load time there is no packet to answer, and no
// daemon to send through).
func (ps *pluginState) callbackCtx(L *lua.LState, what string) *Ctx {
	if ps.loading || ps.w == nil || ps.w.ctx.pkt == nil || ps.w.ctx.cur != ps.p.name() {
		L.RaiseError("%s works only inside a packet callback", what)
	}
	return &ps.w.ctx
}

// pktReplyReset is pkt:reply_reset().
func pktReplyReset(L *lua.LState) int {
	return pushResult(L, viewOf(L).ctx.ReplyReset())
}

// pktReplyICMP is pkt:reply_icmp(type, code).
func pktReplyICMP(L *lua.LState) int {
	typ, code := uint8(checkInt(L, 2, 0, 255)), uint8(checkInt(L, 3, 0, 255))
	return pushResult(L, viewOf(L).ctx.ReplyICMP(typ, code))
}

// pktReplyUDP is pkt:reply_udp(payload).
func pktReplyUDP(L *lua.LState) int {
	return pushResult(L, viewOf(L).ctx.ReplyUDP([]byte(L.CheckString(2))))
}

// packetBuilders is the run-time packet module.
func packetBuilders(L *lua.LState) *lua.LTable {
	t := L.NewTable()
	for _, kind := range []string{"tcp", "udp", "icmp", "icmpv6"} {
		t.RawSetString(kind, L.NewClosure(buildPacket, lua.LString(kind)))
	}
	return t
}

// builderFields are the fields each builder takes.
var builderFields = map[string][]string{
	"tcp":    {"src", "dst", "sport", "dport", "flags", "seq", "ack", "ttl", "payload"},
	"udp":    {"src", "dst", "sport", "dport", "ttl", "payload"},
	"icmp":   {"src", "dst", "type", "code", "id", "seq", "ttl", "payload"},
	"icmpv6": {"src", "dst", "type", "code", "id", "seq", "ttl", "payload"},
}

// buildPacket is packet.KIND{fields}: the bytes of a valid packet. src and
// dst are required; TCP flags are letters ("SA") or a number.
func buildPacket(L *lua.LState) int {
	kind := string(L.Get(lua.UpvalueIndex(1)).(lua.LString))
	t := L.CheckTable(1)
	f := builderReader{L: L, kind: kind, t: t}
	t.ForEach(func(k, _ lua.LValue) {
		if !contains(builderFields[kind], k.String()) {
			L.RaiseError("packet.%s: unknown field %q (want %s)", kind, k.String(), strings.Join(builderFields[kind], ", "))
		}
	})
	s := packet.Spec{Src: f.addr("src"), Dst: f.addr("dst"), TTL: uint8(f.uint("ttl", 0, 255)),
		Payload: []byte(f.str("payload"))}
	switch kind {
	case "tcp", "udp":
		s.Proto = packet.ProtoUDP
		if kind == "tcp" {
			s.Proto = packet.ProtoTCP
			s.TCPFlags = f.flags()
			s.Seq, s.Ack = uint32(f.uint("seq", 0, math.MaxUint32)), uint32(f.uint("ack", 0, math.MaxUint32))
		}
		s.SrcPort, s.DstPort = uint16(f.uint("sport", 0, 65535)), uint16(f.uint("dport", 0, 65535))
	default:
		s.Proto, s.ICMPType = packet.ProtoICMP, 8
		if kind == "icmpv6" {
			s.Proto, s.ICMPType = packet.ProtoICMPv6, 128
		}
		s.ICMPType = uint8(f.uint("type", uint64(s.ICMPType), 255))
		s.ICMPCode = uint8(f.uint("code", 0, 255))
		s.Seq = uint32(f.uint("id", 0, 65535))<<16 | uint32(f.uint("seq", 0, 65535))
	}
	b, err := packet.Build(s)
	if err != nil {
		L.RaiseError("packet.%s: %v", kind, err)
	}
	L.Push(lua.LString(b))
	return 1
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// builderReader reads a builder's typed fields, raising on a bad one.
type builderReader struct {
	L    *lua.LState
	kind string
	t    *lua.LTable
}

func (f builderReader) str(name string) string {
	switch v := f.t.RawGetString(name).(type) {
	case *lua.LNilType:
		return ""
	case lua.LString:
		return string(v)
	default:
		f.L.RaiseError("packet.%s: %s must be a string, not %s", f.kind, name, v.Type())
	}
	return ""
}

func (f builderReader) uint(name string, def, max uint64) uint64 {
	v := f.t.RawGetString(name)
	if v == lua.LNil {
		return def
	}
	n, ok := v.(lua.LNumber)
	if !ok || float64(n) != math.Trunc(float64(n)) || n < 0 || float64(n) > float64(max) {
		f.L.RaiseError("packet.%s: %s must be an integer 0..%d, not %s", f.kind, name, max, v.String())
	}
	return uint64(n)
}

func (f builderReader) addr(name string) netip.Addr {
	s := f.str(name)
	a, err := netip.ParseAddr(s)
	if err != nil {
		f.L.RaiseError("packet.%s: %s must be an IP address, not %q", f.kind, name, s)
	}
	return a.Unmap()
}

func (f builderReader) flags() uint8 {
	v := f.t.RawGetString("flags")
	if _, ok := v.(lua.LNumber); ok {
		return uint8(f.uint("flags", 0, 255))
	}
	var out uint8
	for _, r := range f.str("flags") {
		bit, ok := packet.TCPFlagByLetter(r)
		if !ok {
			f.L.RaiseError("packet.%s: unknown TCP flag %q (want %s)", f.kind, r, packet.TCPFlagLetterList)
		}
		out |= bit
	}
	return out
}

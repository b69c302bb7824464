package engine

import (
	"fmt"
	"math"
	"slices"
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

// buildPacket is packet.KIND{fields}: the bytes of a valid packet. src and
// dst are required; TCP flags are letters ("SA") or a number.
func buildPacket(L *lua.LState) int {
	kind := string(L.Get(lua.UpvalueIndex(1)).(lua.LString))
	f := FieldReader{Kind: kind, Fields: TableFields(L.CheckTable(1))}
	for k := range f.Fields {
		if !slices.Contains(BuilderFields[kind], k) {
			L.RaiseError("packet.%s: unknown field %q (want %s)", kind, k, strings.Join(BuilderFields[kind], ", "))
		}
	}
	s, err := f.Spec(nil)
	if err != nil {
		L.RaiseError("%v", err)
	}
	b, err := packet.Build(s)
	if err != nil {
		L.RaiseError("packet.%s: %v", kind, err)
	}
	L.Push(lua.LString(b))
	return 1
}

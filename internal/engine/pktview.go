package engine

import (
	"fmt"

	"github.com/luafw/luafw/internal/sandbox"

	lua "github.com/luafw/luafw/lua"

	"github.com/luafw/luafw/host/packet"
)

// The packet view. One userdata per plugin state is reused for every
// packet; fields are computed when read, from the worker's Ctx, and the
// common values (ports, small numbers, names) are pre-boxed so that reading
// them does not allocate. pkt.tcp is in pktview_tcp.go, pkt.ct in pktview_ct.go.

// pktView is what the view functions of one state read, through their
// first upvalue (viewOf).
type pktView struct {
	ctx     *Ctx // the worker's; nil in the load-time probe
	ps      *pluginState
	vals    boxedValues
	tcp, ct *lua.LUserData

	// methods, made once per state
	setMark, tag, untag, tagged, bytes  *lua.LFunction
	capture                             *lua.LFunction
	ctSetMark, ctSetTimeout, ctSetLabel *lua.LFunction
	rw                                  rewriteFns // pktview_rewrite.go
}

// boxedValues are the pre-boxed values of one state.
type boxedValues struct {
	numbers []lua.LValue
	hooks   [NumHooks]lua.LValue
	states  [len(ctStateNames)]lua.LValue
	protos  map[uint8]lua.LValue
}

func newBoxedValues(numbers []lua.LValue) boxedValues {
	vals := boxedValues{numbers: numbers, protos: map[uint8]lua.LValue{
		packet.ProtoTCP: lua.LString("tcp"), packet.ProtoUDP: lua.LString("udp"),
		packet.ProtoICMP: lua.LString("icmp"), packet.ProtoICMPv6: lua.LString("icmpv6"),
	}}
	for i := range vals.hooks {
		vals.hooks[i] = lua.LString(Hook(i).String())
	}
	for i := range vals.states {
		vals.states[i] = lua.LString(ctStateNames[i])
	}
	return vals
}

// num is n as a Lua number, pre-boxed when small.
func (v *boxedValues) num(n uint32) lua.LValue {
	if int(n) < len(v.numbers) {
		return v.numbers[n]
	}
	return lua.LNumber(n)
}

// openPacket makes ps's packet views: pkt, pkt.tcp and pkt.ct.
func (ps *pluginState) openPacket() {
	L := ps.L
	v := &pktView{vals: newBoxedValues(ps.e.numbers), ps: ps}
	if ps.w != nil {
		v.ctx = &ps.w.ctx
	}
	self := L.NewUserData()
	self.Value = v
	fn := func(f lua.LGFunction) *lua.LFunction { return L.NewClosure(f, self) }
	v.setMark, v.tag, v.untag, v.tagged, v.bytes = fn(pktSetMark), fn(pktTag), fn(pktUntag), fn(pktTagged), fn(pktBytes)
	v.capture = fn(pktCapture)
	v.ctSetMark, v.ctSetTimeout, v.ctSetLabel = fn(ctSetMark), fn(ctSetTimeout), fn(ctSetLabel)
	v.rw = newRewriteFns(fn)
	readOnlyErr := L.NewFunction(viewReadOnly)
	v.tcp = newView(L, "pkt.tcp", readOnlyErr, v, (*pktView).tcpField)
	v.ct = newView(L, "pkt.ct", readOnlyErr, v, (*pktView).ctField)
	ps.tcp, ps.ct = v.tcp, v.ct
	ps.pkt = newView(L, "pkt", readOnlyErr, v, (*pktView).pktField)
}

// viewOf returns the pktView a view function was made for.
func viewOf(L *lua.LState) *pktView {
	return L.Get(lua.UpvalueIndex(1)).(*lua.LUserData).Value.(*pktView)
}

// viewKeyError is a view's __index, which sees only reads whose key is
// not a string: string keys go to the userdata's Index (see newView).
func viewKeyError(L *lua.LState) int {
	L.RaiseError("%s fields are named by strings", L.ToString(lua.UpvalueIndex(1)))
	return 0
}

func viewReadOnly(L *lua.LState) int {
	L.RaiseError("packet fields are read-only (assignment to %q); use pkt:set_mark, pkt:tag, pkt.ct:set_mark, or the rewrites (pkt:set_ttl, pkt:set_payload, ...)", L.ToString(2))
	return 0
}

// viewToString is a view's __tostring: its name (the upvalue).
func viewToString(L *lua.LState) int {
	L.Push(L.Get(lua.UpvalueIndex(1)))
	return 1
}

// newView makes a reused userdata whose fields get reads from v. Reads
// with a string key go straight to get through the userdata's Index (a
// Go call: about 20 ns where an __index metamethod costs about 150 ns,
// patch 1 of package lua); other keys reach __index, an error.
func newView(L *lua.LState, name string, readOnlyErr *lua.LFunction, v *pktView, get func(*pktView, *lua.LState, string) lua.LValue) *lua.LUserData {
	mt := L.NewTable()
	mt.RawSetString("__index", L.NewClosure(viewKeyError, lua.LString(name)))
	mt.RawSetString("__newindex", readOnlyErr)
	mt.RawSetString("__tostring", L.NewClosure(viewToString, lua.LString(name)))
	mt.RawSetString("__metatable", lua.LString(sandbox.LockedMeta))
	ud := L.NewUserData()
	ud.Metatable = mt
	ud.Index = func(L *lua.LState, _ *lua.LUserData, key string) lua.LValue { return get(v, L, key) }
	return ud
}

// pktField is a field or method of pkt by name.
func (v *pktView) pktField(L *lua.LState, key string) lua.LValue {
	c, vals := v.ctx, &v.vals
	switch key {
	case "hook":
		return vals.hooks[c.pkt.Hook]
	case "family":
		return vals.num(uint32(c.Parsed().Family))
	case "src":
		if c.src == nil {
			c.src = c.addrs.value(c.Parsed().Src)
		}
		return c.src
	case "dst":
		if c.dst == nil {
			c.dst = c.addrs.value(c.Parsed().Dst)
		}
		return c.dst
	case "proto":
		p := c.Parsed()
		if pv, ok := vals.protos[p.Proto]; ok {
			return pv
		}
		return vals.num(uint32(p.Proto))
	case "sport":
		return vals.num(uint32(c.Parsed().SrcPort))
	case "dport":
		return vals.num(uint32(c.Parsed().DstPort))
	case "len":
		p := c.Parsed()
		if p.Len > 0 {
			return vals.num(uint32(p.Len))
		}
		return vals.num(uint32(len(c.pkt.Data)))
	case "ttl":
		return vals.num(uint32(c.Parsed().TTL))
	case "tcp":
		return v.tcp
	case "ct":
		return v.ct
	case "payload":
		return lua.LString(c.Parsed().Payload(c.pkt.Data))
	case "indev":
		if c.indev == nil {
			c.indev = strValue(c.pkt.InDev)
		}
		return c.indev
	case "outdev":
		if c.outdev == nil {
			c.outdev = strValue(c.pkt.OutDev)
		}
		return c.outdev
	case "mark":
		return vals.num(c.mark)
	case "cgroup":
		return c.cgroupValue() // cgroup.go
	case "flow":
		return v.ps.flowValue(c) // flowtable.go
	case "uid", "gid":
		if !c.pkt.HasUID {
			return lua.LNil
		}
		if key == "uid" {
			return vals.num(c.pkt.UID)
		}
		return vals.num(c.pkt.GID)
	case "icmp_type":
		return vals.num(uint32(c.Parsed().ICMPType))
	case "icmp_code":
		return vals.num(uint32(c.Parsed().ICMPCode))
	case "fragment":
		return lua.LBool(c.Parsed().Fragment)
	}
	return v.pktMethod(L, key)
}

// pktMethod is a method of pkt by name.
func (v *pktView) pktMethod(L *lua.LState, key string) lua.LValue {
	switch key {
	case "set_mark":
		return v.setMark
	case "tag":
		return v.tag
	case "untag":
		return v.untag
	case "tagged":
		return v.tagged
	case "bytes":
		return v.bytes
	case "capture":
		return v.capture
	}
	return v.rewriteMember(L, key)
}

// pktSetMark is pkt:set_mark(value [, mask]).
func pktSetMark(L *lua.LState) int {
	viewOf(L).ctx.SetMark(checkMark(L))
	return 0
}

// pktTag is pkt:tag(name).
func pktTag(L *lua.LState) int {
	name := L.CheckString(2)
	checkName(L, "pkt:tag", name)
	if !viewOf(L).ctx.Tag(name) {
		L.RaiseError("pkt:tag: a packet carries at most %d tags", maxTags)
	}
	return 0
}

func pktUntag(L *lua.LState) int {
	viewOf(L).ctx.Untag(L.CheckString(2))
	return 0
}

func pktTagged(L *lua.LState) int {
	L.Push(lua.LBool(viewOf(L).ctx.Tagged(L.CheckString(2))))
	return 1
}

// pktCapture is pkt:capture(): ask for the packet in the capture file
// (the configuration's capture section; without one it does nothing).
func pktCapture(L *lua.LState) int {
	viewOf(L).ctx.Capture()
	return 0
}

// pktBytes is pkt:bytes([off [, n]]): raw bytes of the packet, nil when
// off is out of range.
func pktBytes(L *lua.LState) int {
	data := viewOf(L).ctx.pkt.Data
	off := L.OptInt(2, 0)
	n := L.OptInt(3, len(data)-off)
	if off < 0 || n < 0 || off > len(data) {
		L.Push(lua.LNil)
		return 1
	}
	n = min(n, len(data)-off)
	L.Push(lua.LString(data[off : off+n]))
	return 1
}

func strValue(s string) lua.LValue {
	if s == "" {
		return lua.LNil
	}
	return lua.LString(s)
}

// checkMark reads the (value [, mask]) arguments of set_mark; the mask
// defaults to all bits.
func checkMark(L *lua.LState) (value, mask uint32) {
	value, mask = checkU32(L, 2), 0xffffffff
	if L.GetTop() >= 3 {
		mask = checkU32(L, 3)
	}
	return value, mask
}

// checkU32 reads an unsigned 32-bit integer argument.
func checkU32(L *lua.LState, n int) uint32 {
	v := float64(L.CheckNumber(n))
	if v < 0 || v > 0xffffffff || v != float64(uint32(v)) {
		L.ArgError(n, fmt.Sprintf("want an integer 0..0xffffffff, got %v", v))
	}
	return uint32(v)
}

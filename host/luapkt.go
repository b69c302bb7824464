package host

import (
	"fmt"

	lua "github.com/yuin/gopher-lua"

	"github.com/luafw/luafw/host/packet"
)

// The packet view. One userdata per plugin state is reused for every
// packet; fields are computed when read, from the worker's Ctx, and the
// common values (ports, small numbers, names) are pre-boxed so that reading
// them does not allocate.

// luaVals are the pre-boxed values of one state.
type luaVals struct {
	numbers []lua.LValue
	hooks   [NumHooks]lua.LValue
	states  [len(ctStateNames)]lua.LValue
	protos  map[uint8]lua.LValue
}

func (ps *pluginState) initPacket(e *Engine) {
	L := ps.L
	vals := &luaVals{numbers: e.numbers, protos: map[uint8]lua.LValue{
		packet.ProtoTCP: lua.LString("tcp"), packet.ProtoUDP: lua.LString("udp"),
		packet.ProtoICMP: lua.LString("icmp"), packet.ProtoICMPv6: lua.LString("icmpv6"),
	}}
	for i := range vals.hooks {
		vals.hooks[i] = lua.LString(Hook(i).String())
	}
	for i := range vals.states {
		vals.states[i] = lua.LString(ctStateNames[i])
	}
	var ctx *Ctx
	if ps.w != nil {
		ctx = &ps.w.ctx
	}
	num := func(n uint32) lua.LValue {
		if int(n) < len(vals.numbers) {
			return vals.numbers[n]
		}
		return lua.LNumber(n)
	}
	readOnlyErr := L.NewFunction(func(L *lua.LState) int {
		L.RaiseError("packet fields are read-only (assignment to %q); use pkt:set_mark, pkt:tag or pkt.ct:set_mark", L.ToString(2))
		return 0
	})

	// pkt.tcp
	tcpFlag := map[string]uint8{"fin": packet.TCPFin, "syn": packet.TCPSyn, "rst": packet.TCPRst,
		"psh": packet.TCPPsh, "ack": packet.TCPAck, "urg": packet.TCPUrg}
	ps.tcp = newView(L, "pkt.tcp", readOnlyErr, func(L *lua.LState, key string) lua.LValue {
		p := ctx.Parsed()
		if key == "flags" {
			return num(uint32(p.TCPFlags))
		}
		bit, ok := tcpFlag[key]
		if !ok {
			L.RaiseError("pkt.tcp has no field %q (want syn, ack, fin, rst, psh, urg, flags)", key)
		}
		return lua.LBool(p.Proto == packet.ProtoTCP && p.TCPFlags&bit != 0)
	})

	// pkt.ct
	ctSetMark := L.NewFunction(func(L *lua.LState) int {
		ctx.CTSetMark(checkMark(L))
		return 0
	})
	ctSetTimeout := L.NewFunction(func(L *lua.LState) int {
		ctx.CTSetTimeout(checkU32(L, 2))
		return 0
	})
	ctSetLabel := L.NewFunction(func(L *lua.LState) int {
		bit := L.CheckInt(2)
		if bit < 0 || !ctx.CTSetLabel(uint(bit)) {
			L.ArgError(2, "label bit must be 0..127")
		}
		return 0
	})
	ps.ct = newView(L, "pkt.ct", readOnlyErr, func(L *lua.LState, key string) lua.LValue {
		switch key {
		case "state":
			s := ctx.pkt.CTState
			if s == CTUnknown {
				return lua.LNil
			}
			return vals.states[s]
		case "mark":
			m, ok := ctx.CTMark()
			if !ok {
				return lua.LNil
			}
			return num(m)
		case "set_mark":
			return ctSetMark
		case "set_timeout":
			return ctSetTimeout
		case "set_label":
			return ctSetLabel
		}
		L.RaiseError("pkt.ct has no field %q (want state, mark, set_mark, set_timeout, set_label)", key)
		return nil
	})

	// pkt methods
	setMark := L.NewFunction(func(L *lua.LState) int {
		ctx.SetMark(checkMark(L))
		return 0
	})
	tag := L.NewFunction(func(L *lua.LState) int {
		if !ctx.Tag(L.CheckString(2)) {
			L.RaiseError("pkt:tag: a packet carries at most %d tags", maxTags)
		}
		return 0
	})
	untag := L.NewFunction(func(L *lua.LState) int {
		ctx.Untag(L.CheckString(2))
		return 0
	})
	tagged := L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LBool(ctx.Tagged(L.CheckString(2))))
		return 1
	})
	capture := L.NewFunction(func(L *lua.LState) int {
		ctx.Capture()
		return 0
	})
	bytesFn := L.NewFunction(func(L *lua.LState) int {
		data := ctx.pkt.Data
		off := L.OptInt(2, 0)
		n := L.OptInt(3, len(data)-off)
		if off < 0 || n < 0 || off > len(data) {
			L.Push(lua.LNil)
			return 1
		}
		n = min(n, len(data)-off)
		L.Push(lua.LString(data[off : off+n]))
		return 1
	})

	ps.pkt = newView(L, "pkt", readOnlyErr, func(L *lua.LState, key string) lua.LValue {
		c := ctx
		switch key {
		case "hook":
			return vals.hooks[c.pkt.Hook]
		case "family":
			return num(uint32(c.Parsed().Family))
		case "src":
			if c.src == nil {
				c.src = addrValue(c.Parsed().Src.IsValid(), c.parsed.Src.String())
			}
			return c.src
		case "dst":
			if c.dst == nil {
				c.dst = addrValue(c.Parsed().Dst.IsValid(), c.parsed.Dst.String())
			}
			return c.dst
		case "proto":
			p := c.Parsed()
			if v, ok := vals.protos[p.Proto]; ok {
				return v
			}
			return num(uint32(p.Proto))
		case "sport":
			return num(uint32(c.Parsed().SrcPort))
		case "dport":
			return num(uint32(c.Parsed().DstPort))
		case "len":
			p := c.Parsed()
			if p.Len > 0 {
				return num(uint32(p.Len))
			}
			return num(uint32(len(c.pkt.Data)))
		case "ttl":
			return num(uint32(c.Parsed().TTL))
		case "tcp":
			return ps.tcp
		case "ct":
			return ps.ct
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
			return num(c.mark)
		case "uid":
			if !c.pkt.HasUID {
				return lua.LNil
			}
			return num(c.pkt.UID)
		case "gid":
			if !c.pkt.HasUID {
				return lua.LNil
			}
			return num(c.pkt.GID)
		case "icmp_type":
			return num(uint32(c.Parsed().ICMPType))
		case "icmp_code":
			return num(uint32(c.Parsed().ICMPCode))
		case "fragment":
			return lua.LBool(c.Parsed().Fragment)
		case "set_mark":
			return setMark
		case "tag":
			return tag
		case "untag":
			return untag
		case "tagged":
			return tagged
		case "bytes":
			return bytesFn
		case "capture":
			return capture
		}
		L.RaiseError("pkt has no field %q", key)
		return nil
	})
}

// newView makes a reused userdata whose fields come from index(key).
func newView(L *lua.LState, name string, readOnlyErr *lua.LFunction, index func(L *lua.LState, key string) lua.LValue) *lua.LUserData {
	mt := L.NewTable()
	mt.RawSetString("__index", L.NewFunction(func(L *lua.LState) int {
		k, ok := L.Get(2).(lua.LString)
		if !ok {
			L.RaiseError("%s fields are named by strings", name)
		}
		L.Push(index(L, string(k)))
		return 1
	}))
	mt.RawSetString("__newindex", readOnlyErr)
	mt.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LString(name))
		return 1
	}))
	mt.RawSetString("__metatable", lua.LString(lockedMeta))
	ud := L.NewUserData()
	ud.Metatable = mt
	return ud
}

func addrValue(valid bool, s string) lua.LValue {
	if !valid {
		return lua.LNil
	}
	return lua.LString(s)
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

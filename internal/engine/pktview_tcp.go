package engine

import (
	lua "github.com/luafw/luafw/lua"

	"github.com/luafw/luafw/host/packet"
)

// pkt.tcp: the TCP flags of the packet, as booleans and as a number.

// tcpField is a field of pkt.tcp by name.
func (v *pktView) tcpField(L *lua.LState, key string) lua.LValue {
	p := v.ctx.Parsed()
	if key == "flags" {
		return v.vals.num(uint32(p.TCPFlags))
	}
	bit, ok := packet.TCPFlagByName(key)
	if !ok {
		L.RaiseError("%s (want %s, flags)", noSuchField("pkt.tcp", key), packet.TCPFlagNameList)
	}
	return lua.LBool(p.Proto == packet.ProtoTCP && p.TCPFlags&bit != 0)
}

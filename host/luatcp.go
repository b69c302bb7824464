package host

import (
	lua "github.com/yuin/gopher-lua"

	"github.com/luafw/luafw/host/packet"
)

// pkt.tcp: the TCP flags of the packet, as booleans and as a number.

var tcpFlagBits = map[string]uint8{"fin": packet.TCPFin, "syn": packet.TCPSyn, "rst": packet.TCPRst,
	"psh": packet.TCPPsh, "ack": packet.TCPAck, "urg": packet.TCPUrg}

// tcpIndex is pkt.tcp's __index.
func tcpIndex(L *lua.LState) int {
	v := viewOf(L)
	key := viewKey(L, "pkt.tcp")
	p := v.ctx.Parsed()
	if key == "flags" {
		L.Push(v.vals.num(uint32(p.TCPFlags)))
		return 1
	}
	bit, ok := tcpFlagBits[key]
	if !ok {
		L.RaiseError("pkt.tcp has no field %q (want syn, ack, fin, rst, psh, urg, flags)", key)
	}
	L.Push(lua.LBool(p.Proto == packet.ProtoTCP && p.TCPFlags&bit != 0))
	return 1
}

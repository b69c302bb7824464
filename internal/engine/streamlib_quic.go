package engine

import lua "github.com/luafw/luafw/lua"

// quicHello is stream.tls_hello(pkt) for a UDP packet.
func (s *streamState) quicHello(L *lua.LState, c *Ctx) int {
	return failure(L, "not quic")
}

package plugintest

import (
	lua "github.com/luafw/luafw/lua"

	"github.com/luafw/luafw/host/quic"
)

// quicInitial is packet.quic_initial(sni [, version]): the UDP payload of
// a QUIC client Initial (version 1, or 2) carrying a ClientHello for sni
// in one CRYPTO frame, padded to 1200 bytes, as a browser's first packet.
func quicInitial(L *lua.LState) int {
	sni := L.CheckString(1)
	v := quic.V1
	switch L.OptInt(2, 1) {
	case 1:
	case 2:
		v = quic.V2
	default:
		L.ArgError(2, "version must be 1 or 2")
	}
	rec, err := TLSClientHello(sni, []string{"h3"})
	if err != nil {
		L.RaiseError("packet.quic_initial: %v", err)
	}
	pkt, err := quic.Seal(v, []byte{0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08}, nil, 0, quic.CryptoFrame(0, rec[5:]), 1200)
	if err != nil {
		L.RaiseError("packet.quic_initial: %v", err)
	}
	L.Push(lua.LString(pkt))
	return 1
}

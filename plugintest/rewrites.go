package plugintest

import (
	"net/netip"

	lua "github.com/luafw/luafw/lua"

	"github.com/luafw/luafw/host/packet"
	"github.com/luafw/luafw/internal/engine"
)

// Rewrites and injected packets in decision tables: d.rewritten is the
// packet as the callbacks left it (nil when none rewrote it), d.injected the
// packets they sent (fw.send, pkt:reply_*), in order. Each is a table with
// the bytes (data) and the decoded fields tests assert on.

// addRewrites sets d.rewritten and d.injected of a decision table.
func addRewrites(L *lua.LState, t *lua.LTable, d engine.Decision) {
	if d.Data != nil {
		t.RawSetString("rewritten", packetInfo(L, d.Data))
	}
	inj := L.CreateTable(len(d.Injected), 0)
	for _, p := range d.Injected {
		pt := packetInfo(L, p.Data)
		pt.RawSetString("mark", lua.LNumber(p.Mark))
		pt.RawSetString("plugin", lua.LString(p.Plugin))
		inj.Append(pt)
	}
	t.RawSetString("injected", inj)
}

// packetInfo decodes data for a test: data, family, src, dst, proto,
// sport, dport, ttl, flags (TCP letters as in packet.tcp), type and code
// (ICMP), payload, and checksums_ok (what a receiver would check).
func packetInfo(L *lua.LState, data []byte) *lua.LTable {
	var p packet.Parsed
	p.Decode(data)
	t := L.NewTable()
	t.RawSetString("data", lua.LString(data))
	t.RawSetString("len", lua.LNumber(len(data)))
	if p.Family == 0 {
		return t
	}
	t.RawSetString("family", lua.LNumber(p.Family))
	addr := func(a netip.Addr) lua.LValue { return lua.LString(a.String()) }
	t.RawSetString("src", addr(p.Src))
	t.RawSetString("dst", addr(p.Dst))
	t.RawSetString("proto", lua.LString(packet.ProtoName(p.Proto)))
	t.RawSetString("ttl", lua.LNumber(p.TTL))
	switch p.Proto {
	case packet.ProtoTCP, packet.ProtoUDP:
		t.RawSetString("sport", lua.LNumber(p.SrcPort))
		t.RawSetString("dport", lua.LNumber(p.DstPort))
		if p.Proto == packet.ProtoTCP {
			t.RawSetString("flags", lua.LString(flagLetters(p.TCPFlags)))
			if p.L4Off >= 0 {
				b := data[p.L4Off:]
				t.RawSetString("seq", lua.LNumber(uint32(b[4])<<24|uint32(b[5])<<16|uint32(b[6])<<8|uint32(b[7])))
				t.RawSetString("ack", lua.LNumber(uint32(b[8])<<24|uint32(b[9])<<16|uint32(b[10])<<8|uint32(b[11])))
			}
		}
	case packet.ProtoICMP, packet.ProtoICMPv6:
		t.RawSetString("type", lua.LNumber(p.ICMPType))
		t.RawSetString("code", lua.LNumber(p.ICMPCode))
	}
	t.RawSetString("payload", lua.LString(p.Payload(data)))
	t.RawSetString("checksums_ok", lua.LBool(packet.VerifyChecksums(&p, data)))
	return t
}

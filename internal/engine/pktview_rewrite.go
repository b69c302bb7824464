package engine

import (
	"fmt"
	"unsafe"

	lua "github.com/luafw/luafw/lua"
)

// The packet view's rewrites: pkt:set_payload, pkt:write, pkt:set_ttl,
// pkt:set_dscp, pkt:set_ecn, pkt:clamp_mss, and the fields pkt.dscp,
// pkt.ecn and pkt.rewritten. The methods return true, or false and a reason
// when the packet cannot take the rewrite (a fragment, a truncated copy, a
// TCP payload of another length): those depend on the packet, which an
// attacker picks, so they must not raise errors that would cost the plugin
// its on_error verdict and, repeated, a quarantine. Wrong arguments raise.

// rewriteFns are the rewrite methods of one state.
type rewriteFns struct {
	setPayload, write, setTTL, setDSCP, setECN, clampMSS *lua.LFunction
	replyReset, replyICMP, replyUDP                      *lua.LFunction // packetlib.go
}

func newRewriteFns(fn func(lua.LGFunction) *lua.LFunction) rewriteFns {
	return rewriteFns{setPayload: fn(pktSetPayload), write: fn(pktWrite), setTTL: fn(pktSetTTL),
		setDSCP: fn(pktSetDSCP), setECN: fn(pktSetECN), clampMSS: fn(pktClampMSS),
		replyReset: fn(pktReplyReset), replyICMP: fn(pktReplyICMP), replyUDP: fn(pktReplyUDP)}
}

// rewriteMember is a rewrite method or field of pkt by name.
func (v *pktView) rewriteMember(L *lua.LState, key string) lua.LValue {
	switch key {
	case "set_payload":
		return v.rw.setPayload
	case "write":
		return v.rw.write
	case "set_ttl":
		return v.rw.setTTL
	case "set_dscp":
		return v.rw.setDSCP
	case "set_ecn":
		return v.rw.setECN
	case "clamp_mss":
		return v.rw.clampMSS
	case "reply_reset":
		return v.rw.replyReset
	case "reply_icmp":
		return v.rw.replyICMP
	case "reply_udp":
		return v.rw.replyUDP
	case "dscp":
		d, _ := v.ctx.TrafficClass()
		return v.vals.num(uint32(d))
	case "ecn":
		_, e := v.ctx.TrafficClass()
		return v.vals.num(uint32(e))
	case "rewritten":
		return lua.LBool(v.ctx.Rewritten())
	}
	L.RaiseError("%s", noSuchField("pkt", key))
	return nil
}

// pktSetPayload is pkt:set_payload(bytes).
func pktSetPayload(L *lua.LState) int {
	return pushResult(L, viewOf(L).ctx.SetPayload(stringBytes(L.CheckString(2))))
}

// stringBytes views s as bytes without copying; the rewrites only copy
// from it, never write or keep it.
func stringBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// pktWrite is pkt:write(offset, bytes): offset 0 is the first byte of the
// IP header.
func pktWrite(L *lua.LState) int {
	off := checkInt(L, 2, 0, 0xffff)
	return pushResult(L, viewOf(L).ctx.WriteAt(off, stringBytes(L.CheckString(3))))
}

// pktSetTTL is pkt:set_ttl(n): the TTL or hop limit.
func pktSetTTL(L *lua.LState) int {
	return pushResult(L, viewOf(L).ctx.SetTTL(uint8(checkInt(L, 2, 0, 255))))
}

func pktSetDSCP(L *lua.LState) int {
	return pushResult(L, viewOf(L).ctx.SetDSCP(uint8(checkInt(L, 2, 0, 63))))
}

func pktSetECN(L *lua.LState) int {
	return pushResult(L, viewOf(L).ctx.SetECN(uint8(checkInt(L, 2, 0, 3))))
}

// pktClampMSS is pkt:clamp_mss(n): true when the SYN's MSS was lowered to
// n; false and a reason when there was nothing to lower (not a SYN, no MSS
// option, MSS already at most n: then the reason is nil).
func pktClampMSS(L *lua.LState) int {
	changed, err := viewOf(L).ctx.ClampMSS(uint16(checkInt(L, 2, 1, 0xffff)))
	if err != nil {
		return pushResult(L, err)
	}
	L.Push(lua.LBool(changed))
	return 1
}

// checkInt reads an integer argument in [lo, hi].
func checkInt(L *lua.LState, n, lo, hi int) int {
	f := float64(L.CheckNumber(n))
	if f != float64(int(f)) || int(f) < lo || int(f) > hi {
		L.ArgError(n, fmt.Sprintf("want an integer %d..%d, got %v", lo, hi, f))
	}
	return int(f)
}

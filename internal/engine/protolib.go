package engine

import (
	"strings"
	"unsafe"

	lua "github.com/luafw/luafw/lua"

	"github.com/luafw/luafw/host/dnsmsg"
	"github.com/luafw/luafw/host/tlshello"
)

// protoModules returns the Go-backed protocol parser modules every plugin
// state gets as globals (e.g. dns, tls), by name.
//
//	dns.parse(payload) -> {id=, qr=, opcode=, rcode=, aa=, tc=, rd=, ra=,
//	    qdcount=, ancount=, nscount=, arcount=, qname=, qtype=, qtype_num=,
//	    qclass=} | nil, reason
//	tls.sni(payload) -> name | nil, reason
//	tls.parse(payload) -> {sni=, alpn={...}, version=, version_name=,
//	    legacy_version=, truncated=} | nil, reason
//
// Malformed input never raises an error: the functions return nil and a
// short reason ("truncated", "short header", "not a handshake record", ...).
// Names come lowercased, without a trailing dot.
func protoModules(L *lua.LState) map[string]lua.LValue {
	return map[string]lua.LValue{
		"dns": dnsModule(L),
		"tls": tlsModule(L),
	}
}

// payloadArg returns argument 1 as bytes without copying it; the parsers
// only read their input and keep no reference past the call.
func payloadArg(L *lua.LState) ([]byte, bool) {
	s, ok := L.Get(1).(lua.LString)
	if !ok {
		return nil, false
	}
	if len(s) == 0 {
		return nil, true
	}
	return unsafe.Slice(unsafe.StringData(string(s)), len(s)), true
}

func failure(L *lua.LState, reason string) int {
	L.Push(lua.LNil)
	L.Push(lua.LString(reason))
	return 2
}

func dnsModule(L *lua.LState) *lua.LTable {
	// One message buffer per Lua state: a state runs on one goroutine.
	var m dnsmsg.Msg
	mod := L.NewTable()
	mod.RawSetString("answer", L.NewFunction(dnsAnswer)) // protolib_dns.go
	mod.RawSetString("parse", L.NewFunction(func(L *lua.LState) int {
		b, ok := payloadArg(L)
		if !ok {
			return failure(L, "payload must be a string")
		}
		if err := m.Parse(b); err != nil {
			return failure(L, err.(*dnsmsg.Error).Reason)
		}
		L.Push(dnsTable(L, &m))
		return 1
	}))
	return mod
}

// dnsTable is the Lua table of a parsed DNS message.
func dnsTable(L *lua.LState, m *dnsmsg.Msg) *lua.LTable {
	t := L.CreateTable(0, 16)
	t.RawSetString("id", lua.LNumber(m.ID))
	t.RawSetString("qr", lua.LBool(m.QR))
	t.RawSetString("opcode", lua.LNumber(m.Opcode))
	t.RawSetString("rcode", lua.LNumber(m.RCode))
	t.RawSetString("aa", lua.LBool(m.AA))
	t.RawSetString("tc", lua.LBool(m.TC))
	t.RawSetString("rd", lua.LBool(m.RD))
	t.RawSetString("ra", lua.LBool(m.RA))
	t.RawSetString("qdcount", lua.LNumber(m.QDCount))
	t.RawSetString("ancount", lua.LNumber(m.ANCount))
	t.RawSetString("nscount", lua.LNumber(m.NSCount))
	t.RawSetString("arcount", lua.LNumber(m.ARCount))
	if m.HasQuestion {
		t.RawSetString("qname", lua.LString(m.QName()))
		t.RawSetString("qtype_num", lua.LNumber(m.QType))
		if s := dnsmsg.TypeString(m.QType); s != "" {
			t.RawSetString("qtype", lua.LString(s))
		} else {
			t.RawSetString("qtype", lua.LNumber(m.QType))
		}
		if s := dnsmsg.ClassString(m.QClass); s != "" {
			t.RawSetString("qclass", lua.LString(s))
		} else {
			t.RawSetString("qclass", lua.LNumber(m.QClass))
		}
	}
	return t
}

// hostName turns an SNI into the form scripts compare: lowercased, no
// trailing dot.
func hostName(b []byte) lua.LString {
	s := strings.ToLower(string(b))
	return lua.LString(strings.TrimSuffix(s, "."))
}

func tlsModule(L *lua.LState) *lua.LTable {
	var h tlshello.Hello
	// parse runs the parser; it returns false (and pushes nil, reason)
	// unless there is something to report.
	parse := func(L *lua.LState) (ok bool, n int) {
		b, isStr := payloadArg(L)
		if !isStr {
			return false, failure(L, "payload must be a string")
		}
		err := tlshello.Parse(b, &h)
		switch {
		case err == nil:
		case err == tlshello.ErrTruncated && h.SNI != nil:
		default:
			return false, failure(L, err.(*tlshello.Error).Reason)
		}
		return true, 0
	}
	mod := L.NewTable()
	mod.RawSetString("sni", L.NewFunction(func(L *lua.LState) int {
		if ok, n := parse(L); !ok {
			return n
		}
		if h.SNI == nil {
			return failure(L, tlshello.ErrNoSNI.Reason)
		}
		L.Push(hostName(h.SNI))
		return 1
	}))
	mod.RawSetString("parse", L.NewFunction(func(L *lua.LState) int {
		if ok, n := parse(L); !ok {
			return n
		}
		t := L.CreateTable(0, 6)
		if h.SNI != nil {
			t.RawSetString("sni", hostName(h.SNI))
		}
		helloFields(L, t, &h)
		t.RawSetString("truncated", lua.LBool(h.Truncated))
		L.Push(t)
		return 1
	}))
	return mod
}

// helloFields sets a hello's alpn, version, version_name and
// legacy_version in t (tls.parse, stream.tls_hello).
func helloFields(L *lua.LState, t *lua.LTable, h *tlshello.Hello) {
	alpn := L.CreateTable(h.NALPN, 0)
	for _, p := range h.Protocols() {
		alpn.Append(lua.LString(p))
	}
	t.RawSetString("alpn", alpn)
	t.RawSetString("version", lua.LNumber(h.Version))
	if s := tlshello.VersionName(h.Version); s != "" {
		t.RawSetString("version_name", lua.LString(s))
	}
	t.RawSetString("legacy_version", lua.LNumber(h.LegacyVersion))
}

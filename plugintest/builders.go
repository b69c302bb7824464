package plugintest

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
)

// dnsTypes are the query types DNSType knows by name.
var dnsTypes = map[string]uint16{
	"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16,
	"AAAA": 28, "SRV": 33, "DS": 43, "DNSKEY": 48, "SVCB": 64, "HTTPS": 65, "ANY": 255,
}

// DNSType returns the query type number of a name such as "AAAA" (any
// case), or of a decimal number.
func DNSType(name string) (uint16, error) {
	if t, ok := dnsTypes[strings.ToUpper(name)]; ok {
		return t, nil
	}
	if n, err := strconv.ParseUint(name, 10, 16); err == nil {
		return uint16(n), nil
	}
	return 0, fmt.Errorf("unknown DNS query type %q (want A, AAAA, MX, TXT, ... or a number)", name)
}

// DNSQuery returns the UDP payload of a standard DNS query (RFC 1035): a
// 12-byte header with the given id and only the recursion-desired flag,
// then one question for name (dots separate labels; a trailing dot is
// allowed) of type qtype, class IN.
func DNSQuery(name string, qtype, id uint16) ([]byte, error) {
	name = strings.TrimSuffix(name, ".")
	b := make([]byte, 12, 12+len(name)+6)
	binary.BigEndian.PutUint16(b[0:2], id)
	binary.BigEndian.PutUint16(b[2:4], 0x0100) // RD
	binary.BigEndian.PutUint16(b[4:6], 1)      // QDCOUNT
	if name != "" {
		for _, label := range strings.Split(name, ".") {
			if label == "" || len(label) > 63 {
				return nil, fmt.Errorf("dns query: bad label %q in %q (1 to 63 bytes)", label, name)
			}
			b = append(b, byte(len(label)))
			b = append(b, label...)
		}
	}
	b = append(b, 0) // root
	if len(b)-12 > 255 {
		return nil, fmt.Errorf("dns query: name %q is longer than 255 bytes encoded", name)
	}
	b = binary.BigEndian.AppendUint16(b, qtype)
	b = binary.BigEndian.AppendUint16(b, 1) // class IN
	return b, nil
}

// TLS constants of the ClientHello that TLSClientHello builds.
const (
	tlsRecordHandshake   = 22
	tlsHandshakeHello    = 1
	extServerName        = 0x0000
	extSupportedGroups   = 0x000a
	extECPointFormats    = 0x000b
	extSignatureAlgs     = 0x000d
	extALPN              = 0x0010
	extSupportedVersions = 0x002b
	extPSKModes          = 0x002d
	extKeyShare          = 0x0033
	groupX25519          = 0x001d
)

// TLSClientHello returns one TLS record holding a ClientHello as a modern
// client sends it: TLS 1.3 and 1.2 offered (supported_versions), an x25519
// key share, common cipher suites and signature algorithms, the server
// name serverName (SNI; left out when empty) and the ALPN protocols (left
// out when none). Random, session id and key share are fixed bytes, so the
// result is the same on every call.
func TLSClientHello(serverName string, alpn []string) ([]byte, error) {
	if len(serverName) > 0xffff-5 {
		return nil, fmt.Errorf("tls client hello: server name of %d bytes is too long", len(serverName))
	}
	var body []byte
	body = append(body, 0x03, 0x03) // legacy_version TLS 1.2
	for i := range 32 {             // random
		body = append(body, byte(i))
	}
	body = append(body, 32) // legacy_session_id
	for i := range 32 {
		body = append(body, byte(0xa0+i))
	}
	suites := []uint16{0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8}
	body = binary.BigEndian.AppendUint16(body, uint16(2*len(suites)))
	for _, s := range suites {
		body = binary.BigEndian.AppendUint16(body, s)
	}
	body = append(body, 1, 0) // compression: null only

	var ext []byte
	addExt := func(typ uint16, data []byte) {
		ext = binary.BigEndian.AppendUint16(ext, typ)
		ext = binary.BigEndian.AppendUint16(ext, uint16(len(data)))
		ext = append(ext, data...)
	}
	if serverName != "" {
		var sni []byte
		sni = binary.BigEndian.AppendUint16(sni, uint16(3+len(serverName))) // server_name_list
		sni = append(sni, 0)                                                // host_name
		sni = binary.BigEndian.AppendUint16(sni, uint16(len(serverName)))
		sni = append(sni, serverName...)
		addExt(extServerName, sni)
	}
	addExt(extSupportedGroups, []byte{0, 6, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18}) // x25519, P-256, P-384
	addExt(extECPointFormats, []byte{1, 0})                                      // uncompressed
	sigs := []uint16{0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601}
	var sa []byte
	sa = binary.BigEndian.AppendUint16(sa, uint16(2*len(sigs)))
	for _, s := range sigs {
		sa = binary.BigEndian.AppendUint16(sa, s)
	}
	addExt(extSignatureAlgs, sa)
	if len(alpn) > 0 {
		var list []byte
		for _, p := range alpn {
			if p == "" || len(p) > 255 {
				return nil, fmt.Errorf("tls client hello: ALPN protocol %q must be 1 to 255 bytes", p)
			}
			list = append(list, byte(len(p)))
			list = append(list, p...)
		}
		if len(list) > 0xffff-2 {
			return nil, fmt.Errorf("tls client hello: ALPN list too long")
		}
		addExt(extALPN, append(binary.BigEndian.AppendUint16(nil, uint16(len(list))), list...))
	}
	addExt(extSupportedVersions, []byte{4, 0x03, 0x04, 0x03, 0x03}) // TLS 1.3, 1.2
	addExt(extPSKModes, []byte{1, 1})                               // psk_dhe_ke
	ks := binary.BigEndian.AppendUint16(nil, 2+2+32)                // client_shares
	ks = binary.BigEndian.AppendUint16(ks, groupX25519)
	ks = binary.BigEndian.AppendUint16(ks, 32)
	for i := range 32 {
		ks = append(ks, byte(0x40+i))
	}
	addExt(extKeyShare, ks)

	body = binary.BigEndian.AppendUint16(body, uint16(len(ext)))
	body = append(body, ext...)

	if len(body)+4 > 0xffff {
		return nil, fmt.Errorf("tls client hello: %d bytes do not fit one record", len(body)+4)
	}
	rec := make([]byte, 0, 5+4+len(body))
	rec = append(rec, tlsRecordHandshake, 0x03, 0x01) // legacy record version TLS 1.0
	rec = binary.BigEndian.AppendUint16(rec, uint16(4+len(body)))
	rec = append(rec, tlsHandshakeHello, byte(len(body)>>16), byte(len(body)>>8), byte(len(body)))
	rec = append(rec, body...)
	return rec, nil
}

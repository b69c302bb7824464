package tlshello

import "encoding/binary"

// Spec describes a ClientHello for Build.
type Spec struct {
	SNI    string   // host_name; none when ""
	ALPN   []string // offered protocols; no extension when empty
	TLS13  bool     // offer TLS 1.3 and 1.2 in supported_versions
	GREASE bool     // add GREASE cipher suite, extensions and version, as browsers do
	// Padding adds a padding extension (RFC 7685) of this many bytes, to
	// make hellos that span several TCP segments.
	Padding int
	// PadFirst puts the padding before server_name, so that the name comes
	// late in a long hello (browsers shuffle their extensions).
	PadFirst bool
}

// Build returns a TLS handshake record holding a well-formed ClientHello
// described by s. It is for tests and tools (luafw's pcap generators).
func Build(s Spec) []byte {
	var ext []byte
	addExt := func(typ uint16, data []byte) {
		ext = binary.BigEndian.AppendUint16(ext, typ)
		ext = binary.BigEndian.AppendUint16(ext, uint16(len(data)))
		ext = append(ext, data...)
	}
	if s.GREASE {
		addExt(0x3a3a, nil)
	}
	if s.Padding > 0 && s.PadFirst {
		addExt(21, make([]byte, s.Padding))
	}
	if s.SNI != "" {
		var d []byte
		d = binary.BigEndian.AppendUint16(d, uint16(3+len(s.SNI)))
		d = append(d, serverNameHost)
		d = binary.BigEndian.AppendUint16(d, uint16(len(s.SNI)))
		d = append(d, s.SNI...)
		addExt(extServerName, d)
	}
	addExt(10, []byte{0, 4, 0, 0x1d, 0, 0x17}) // supported_groups: x25519, secp256r1
	if len(s.ALPN) > 0 {
		var list []byte
		for _, p := range s.ALPN {
			list = append(list, byte(len(p)))
			list = append(list, p...)
		}
		addExt(extALPN, append(binary.BigEndian.AppendUint16(nil, uint16(len(list))), list...))
	}
	if s.TLS13 {
		vers := []byte{4, 0x03, 0x04, 0x03, 0x03}
		if s.GREASE {
			vers = []byte{6, 0x7a, 0x7a, 0x03, 0x04, 0x03, 0x03}
		}
		addExt(extSupportedVers, vers)
	}
	if s.Padding > 0 && !s.PadFirst {
		addExt(21, make([]byte, s.Padding))
	}
	if s.GREASE {
		addExt(0xdada, []byte{0})
	}

	var body []byte
	body = append(body, 0x03, 0x03)                 // legacy_version TLS 1.2
	body = append(body, make([]byte, randomLen)...) // random
	body = append(body, 0)                          // empty session id
	suites := []byte{0x13, 0x01, 0x13, 0x02, 0xc0, 0x2f}
	if s.GREASE {
		suites = append([]byte{0x2a, 0x2a}, suites...)
	}
	body = binary.BigEndian.AppendUint16(body, uint16(len(suites)))
	body = append(body, suites...)
	body = append(body, 1, 0) // compression: null
	body = binary.BigEndian.AppendUint16(body, uint16(len(ext)))
	body = append(body, ext...)

	rec := []byte{recordHandshake, 0x03, 0x01}
	rec = binary.BigEndian.AppendUint16(rec, uint16(handshakeHdrLen+len(body)))
	rec = append(rec, typeClientHello, byte(len(body)>>16), byte(len(body)>>8), byte(len(body)))
	return append(rec, body...)
}

// Fragment cuts the handshake message of rec (one handshake record, as
// Build returns) into records of the given sizes, the last size repeated
// for the rest: a hello fragmented over records, as evasion tools and some
// clients send it. It is for tests and tools.
func Fragment(rec []byte, sizes ...int) []byte {
	msg := rec[recordHeaderLen:]
	var out []byte
	for len(msg) > 0 {
		n := len(msg)
		if len(sizes) > 0 {
			n = min(sizes[0], n)
			if len(sizes) > 1 {
				sizes = sizes[1:]
			}
		}
		out = append(out, recordHandshake, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

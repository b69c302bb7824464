// Package dnsmsg owns luafw's DNS message parser: it reads the header and
// the first question of a DNS message (RFC 1035) as it travels in a UDP
// payload, for scripts that filter queries by name (the Lua `dns` module).
//
// Parse never trusts a length or a pointer in the message: each compression
// pointer must point before the labels it continues (so pointers cannot
// loop) and at most MaxPointers are followed, names are limited to 255 bytes on the wire, and a
// message cut short is reported as ErrTruncated. It never panics and does
// not allocate: the question name is written into the Msg itself.
//
// The name is given in presentation form, as dig prints it: labels joined
// by dots, ASCII letters lowercased (DNS names compare case-insensitively),
// no trailing dot (the root is ""), and bytes that are not printable ASCII,
// as well as '.' and '\' inside a label, escaped as \DDD or \. so that two
// different names never read the same.
package dnsmsg

import "encoding/binary"

// Limits of the parser.
const (
	// MaxNameWire is the longest name on the wire, length octets and the
	// root label included (RFC 1035 section 3.1).
	MaxNameWire = 255
	// MaxPointers is how many compression pointers one name may follow.
	MaxPointers = 32
	// maxNameText bounds the presentation form: every byte of a 255-byte
	// wire name escaped as \DDD.
	maxNameText = 4 * MaxNameWire
	headerLen   = 12
)

// Error is a reason the parser gives up. Reason is a short phrase scripts
// see as the second result of dns.parse.
type Error struct{ Reason string }

func (e *Error) Error() string { return "dnsmsg: " + e.Reason }

// The errors Parse returns. Compare with ==.
var (
	ErrShort       = &Error{"short header"}   // fewer than 12 bytes
	ErrTruncated   = &Error{"truncated"}      // the question is cut short
	ErrBadLabel    = &Error{"bad label type"} // label type 0x40 or 0x80
	ErrBadPointer  = &Error{"bad pointer"}    // a pointer that does not point backwards into the message
	ErrPointerLoop = &Error{"too many pointers"}
	ErrNameTooLong = &Error{"name too long"} // over 255 bytes on the wire
)

// Header is the fixed 12-byte header of a DNS message.
type Header struct {
	ID      uint16
	QR      bool  // a response
	Opcode  uint8 // 0 query, 4 notify, 5 update, ...
	AA      bool  // authoritative answer
	TC      bool  // truncated (the message, not our parse of it)
	RD      bool  // recursion desired
	RA      bool  // recursion available
	RCode   uint8 // header rcode (low 4 bits): 0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, ...
	QDCount uint16
	ANCount uint16
	NSCount uint16
	ARCount uint16
}

// Msg is a parsed DNS message header and first question. The zero value is
// an empty message; Parse overwrites every field. A Msg is about 1 KiB (the
// name buffer): reuse one rather than making one per packet.
type Msg struct {
	Header

	// HasQuestion reports whether the message has a first question (QDCount
	// > 0) and it parsed; QType, QClass and QName are valid only then.
	HasQuestion bool
	QType       uint16
	QClass      uint16

	name    [maxNameText]byte
	nameLen int
}

// QName returns the first question's name in presentation form (see the
// package comment). It aliases m and is valid until the next Parse.
func (m *Msg) QName() []byte { return m.name[:m.nameLen] }

// Parse reads the header and the first question of the DNS message b into
// m. It returns ErrShort when b cannot hold a header; for any other error
// the header fields are valid and HasQuestion is false.
func (m *Msg) Parse(b []byte) error {
	m.Header = Header{}
	m.HasQuestion, m.QType, m.QClass, m.nameLen = false, 0, 0, 0
	if len(b) < headerLen {
		return ErrShort
	}
	m.ID = binary.BigEndian.Uint16(b[0:2])
	flags := binary.BigEndian.Uint16(b[2:4])
	m.QR = flags&0x8000 != 0
	m.Opcode = uint8(flags>>11) & 0x0f
	m.AA = flags&0x0400 != 0
	m.TC = flags&0x0200 != 0
	m.RD = flags&0x0100 != 0
	m.RA = flags&0x0080 != 0
	m.RCode = uint8(flags & 0x000f)
	m.QDCount = binary.BigEndian.Uint16(b[4:6])
	m.ANCount = binary.BigEndian.Uint16(b[6:8])
	m.NSCount = binary.BigEndian.Uint16(b[8:10])
	m.ARCount = binary.BigEndian.Uint16(b[10:12])
	if m.QDCount == 0 {
		return nil
	}
	next, err := m.readName(b, headerLen)
	if err != nil {
		m.nameLen = 0
		return err
	}
	if len(b)-next < 4 {
		m.nameLen = 0
		return ErrTruncated
	}
	m.QType = binary.BigEndian.Uint16(b[next : next+2])
	m.QClass = binary.BigEndian.Uint16(b[next+2 : next+4])
	m.HasQuestion = true
	return nil
}

// readName reads the (possibly compressed) name at off into m.name and
// returns the offset just past the name where it started (after the first
// pointer, if any).
func (m *Msg) readName(b []byte, off int) (next int, err error) {
	next = -1
	wire := 0 // bytes of the name on the wire, as if uncompressed
	ptrs := 0
	pos := off
	limit := off
	for {
		if pos >= len(b) {
			return 0, ErrTruncated
		}
		c := int(b[pos])
		switch c & 0xc0 {
		case 0x00:
		case 0xc0:
			if pos+1 >= len(b) {
				return 0, ErrTruncated
			}
			target := (c&0x3f)<<8 | int(b[pos+1])
			// A pointer must point to an earlier name: before the start of
			// the labels being read (the name itself, or the previous
			// pointer's target). Targets strictly decrease, so following
			// pointers terminates even without the MaxPointers cap.
			if target >= limit || target < headerLen {
				return 0, ErrBadPointer
			}
			limit = target
			ptrs++
			if ptrs > MaxPointers {
				return 0, ErrPointerLoop
			}
			if next < 0 {
				next = pos + 2
			}
			pos = target
			continue
		default:
			return 0, ErrBadLabel
		}
		wire += c + 1
		if wire > MaxNameWire {
			return 0, ErrNameTooLong
		}
		if c == 0 { // root label: the end
			if next < 0 {
				next = pos + 1
			}
			return next, nil
		}
		if pos+1+c > len(b) {
			return 0, ErrTruncated
		}
		if m.nameLen > 0 {
			m.name[m.nameLen] = '.'
			m.nameLen++
		}
		m.nameLen = appendLabel(&m.name, m.nameLen, b[pos+1:pos+1+c])
		pos += 1 + c
	}
}

// appendLabel writes one label's bytes in presentation form into name at n
// and returns the new length. The buffer cannot overflow: a 255-byte wire
// name needs at most 4 bytes of text per wire byte.
func appendLabel(name *[maxNameText]byte, n int, label []byte) int {
	for _, ch := range label {
		if n > maxNameText-4 {
			return n // unreachable for names within MaxNameWire
		}
		switch {
		case ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '-':
			name[n] = ch
			n++
		case ch >= 'A' && ch <= 'Z':
			name[n] = ch + ('a' - 'A')
			n++
		case ch == '.' || ch == '\\':
			name[n] = '\\'
			name[n+1] = ch
			n += 2
		case ch <= 0x20 || ch >= 0x7f:
			name[n] = '\\'
			name[n+1] = '0' + ch/100
			name[n+2] = '0' + ch/10%10
			name[n+3] = '0' + ch%10
			n += 4
		default:
			name[n] = ch
			n++
		}
	}
	return n
}

// typeNames are the mnemonics of common RR types.
var typeNames = map[uint16]string{
	1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 13: "HINFO", 15: "MX", 16: "TXT",
	17: "RP", 18: "AFSDB", 24: "SIG", 25: "KEY", 28: "AAAA", 29: "LOC", 33: "SRV", 35: "NAPTR",
	36: "KX", 37: "CERT", 39: "DNAME", 41: "OPT", 42: "APL", 43: "DS", 44: "SSHFP", 45: "IPSECKEY",
	46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 49: "DHCID", 50: "NSEC3", 51: "NSEC3PARAM", 52: "TLSA",
	53: "SMIMEA", 55: "HIP", 59: "CDS", 60: "CDNSKEY", 61: "OPENPGPKEY", 62: "CSYNC", 63: "ZONEMD",
	64: "SVCB", 65: "HTTPS", 99: "SPF", 108: "EUI48", 109: "EUI64", 249: "TKEY", 250: "TSIG",
	251: "IXFR", 252: "AXFR", 255: "ANY", 256: "URI", 257: "CAA",
}

// TypeString returns the mnemonic of an RR type ("A", "AAAA", ...) or ""
// when it has none here.
func TypeString(t uint16) string { return typeNames[t] }

// ClassString returns the mnemonic of a class ("IN", "CH", "HS", "NONE",
// "ANY") or "".
func ClassString(c uint16) string {
	switch c {
	case 1:
		return "IN"
	case 3:
		return "CH"
	case 4:
		return "HS"
	case 254:
		return "NONE"
	case 255:
		return "ANY"
	}
	return ""
}

// AppendQuery appends a DNS query message to b: header with the given id
// and the RD flag, and one question for name (dotted, an optional trailing
// dot; "" or "." is the root) of type qtype, class IN. It is for tests and
// tools that need well-formed queries.
func AppendQuery(b []byte, id uint16, name string, qtype uint16) ([]byte, error) {
	b = binary.BigEndian.AppendUint16(b, id)
	b = binary.BigEndian.AppendUint16(b, 0x0100) // RD
	b = append(b, 0, 1, 0, 0, 0, 0, 0, 0)        // QDCOUNT 1
	b, err := AppendName(b, name)
	if err != nil {
		return nil, err
	}
	b = binary.BigEndian.AppendUint16(b, qtype)
	return binary.BigEndian.AppendUint16(b, 1), nil
}

// AppendName appends name in wire form (uncompressed) to b. Labels are
// split at dots; escapes are not interpreted.
func AppendName(b []byte, name string) ([]byte, error) {
	if len(name) > 0 && name[len(name)-1] == '.' {
		name = name[:len(name)-1]
	}
	wire := 1
	for len(name) > 0 {
		label := name
		rest := ""
		for i := 0; i < len(name); i++ {
			if name[i] == '.' {
				label, rest = name[:i], name[i+1:]
				break
			}
		}
		if len(label) == 0 || len(label) > 63 {
			return nil, &Error{"bad label length in " + name}
		}
		wire += 1 + len(label)
		if wire > MaxNameWire {
			return nil, ErrNameTooLong
		}
		b = append(b, byte(len(label)))
		b = append(b, label...)
		name = rest
	}
	return append(b, 0), nil
}

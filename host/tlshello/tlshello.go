// Package tlshello owns luafw's TLS ClientHello parser: given the first
// bytes a client sends on a TLS connection (a handshake record, as one TCP
// segment carries it), it extracts the server name (SNI), the ALPN
// protocols and the highest offered version, for scripts that filter or
// classify connections by name (the Lua `tls` module).
//
// The parser trusts no length: every vector must fit the one around it
// (else ErrMalformed) and the bytes at hand (else ErrTruncated). A hello
// cut short, as happens when a large ClientHello spans several TCP
// segments, still yields what was read before the cut: Parse fills Hello
// with it and reports ErrTruncated. GREASE values (RFC 8701) are ignored.
// Parse never panics and allocates only to join a hello fragmented over
// several records (ParseRecords takes a buffer for that); the SNI and ALPN
// slices alias the input or that buffer.
//
// A ClientHello is read across any number of handshake records (RFC 8446
// section 5.1 lets a sender fragment it at any byte), up to MaxMessage
// bytes. With Encrypted Client Hello the SNI seen is the outer, public name.
package tlshello

import "encoding/binary"

// Limits of the parser.
const (
	// MaxALPN is how many ALPN protocols Hello keeps; more are ignored.
	MaxALPN = 8
	// maxRecord is the largest plaintext record (2^14) plus the expansion
	// RFC 8446 allows a peer, to be lenient.
	maxRecord = 1<<14 + 256
)

// Record and handshake constants.
const (
	recordHandshake   = 22
	typeClientHello   = 1
	extServerName     = 0
	extALPN           = 16
	extSupportedVers  = 43
	serverNameHost    = 0
	recordHeaderLen   = 5
	handshakeHdrLen   = 4
	randomLen         = 32
	maxSessionIDLen   = 32
	maxHostNameLength = 255
)

// Error is a reason the parser gives up. Reason is a short phrase scripts
// see as the second result of tls.sni.
type Error struct{ Reason string }

func (e *Error) Error() string { return "tlshello: " + e.Reason }

// The errors Parse and SNI return. Compare with ==.
var (
	ErrNotHandshake  = &Error{"not a handshake record"} // the first byte is not 22
	ErrNotTLS        = &Error{"not tls"}                // a record version that is not 3.x
	ErrNotHello      = &Error{"not a client hello"}     // another handshake message
	ErrTruncated     = &Error{"truncated"}              // the bytes end before the hello does
	ErrMalformed     = &Error{"malformed"}              // lengths that do not fit, duplicate SNI, ...
	ErrNoSNI         = &Error{"no sni"}                 // a complete hello without a host name
	ErrBadServerName = &Error{"bad server name"}        // empty, too long, or not printable ASCII
)

// Hello is what Parse read from a ClientHello.
type Hello struct {
	// LegacyVersion is the client_version field (0x0303 for TLS 1.2 and
	// 1.3 clients).
	LegacyVersion uint16
	// Version is the highest version offered in supported_versions, or
	// LegacyVersion when the extension is absent.
	Version uint16
	// SNI is the first host_name of the server_name extension, as sent
	// (case not folded); nil when absent. It aliases the input.
	SNI []byte
	// ALPN holds the first NALPN protocols offered, aliasing the input.
	ALPN  [MaxALPN][]byte
	NALPN int
	// Truncated reports that the input ended before the hello did; the
	// fields hold what came before the cut.
	Truncated bool
}

// Protocols returns the ALPN protocols read.
func (h *Hello) Protocols() [][]byte { return h.ALPN[:h.NALPN] }

// SNI returns the server name of the ClientHello at the start of b (a TLS
// record). It returns the name even when b is cut short after it; when the
// cut comes first it returns ErrTruncated, and ErrNoSNI for a complete hello
// without one. The name aliases b.
func SNI(b []byte) ([]byte, error) {
	var h Hello
	err := Parse(b, &h)
	if h.SNI != nil && (err == nil || err == ErrTruncated) {
		return h.SNI, nil
	}
	if err != nil {
		return nil, err
	}
	return nil, ErrNoSNI
}

// Parse reads the ClientHello at the start of b (TLS records) into h. It
// returns nil for a complete hello, ErrTruncated (with h.Truncated set and
// h holding what was read) when b ends before the hello does, and another
// error when b is not a ClientHello or is malformed. A hello fragmented
// over several records is read across them (Parse then allocates; use
// ParseRecords to give it a buffer).
func Parse(b []byte, h *Hello) error {
	_, err := ParseRecords(b, h, nil)
	return err
}

// ParseRecords is Parse with a buffer for a hello fragmented over several
// records: the fragments are joined in buf (grown as needed, returned for
// reuse) and h's slices then alias it. A hello within one record is read in
// place. The records may carry at most MaxMessage bytes of handshake
// message; a record of another type before the hello ends reads as the end
// of the bytes at hand (ErrTruncated).
func ParseRecords(b []byte, h *Hello, buf []byte) ([]byte, error) {
	*h = Hello{}
	msg, buf, err := gather(b, buf)
	if err != nil {
		return buf, h.fail(err)
	}
	return buf, h.fail(parseMessage(msg, h))
}

// ParseMessage reads a ClientHello handshake message without the record
// layer (as QUIC's CRYPTO frames carry it) into h, as Parse does.
func ParseMessage(msg []byte, h *Hello) error {
	*h = Hello{}
	return h.fail(parseMessage(msg, h))
}

func parseMessage(msg []byte, h *Hello) error {
	if len(msg) == 0 {
		return h.truncated()
	}
	if msg[0] != typeClientHello {
		return ErrNotHello
	}
	if len(msg) < handshakeHdrLen {
		return h.truncated()
	}
	hsLen := int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])
	if hsLen+handshakeHdrLen > MaxMessage {
		return ErrMalformed
	}
	body := cursor{b: msg[handshakeHdrLen:], n: hsLen}
	if len(body.b) > hsLen {
		body.b = body.b[:hsLen]
	}
	return h.parseBody(&body)
}

// MaxMessage bounds the handshake message ParseRecords joins from records.
const MaxMessage = 1 << 16

// gather returns the first handshake message of the records in b, as far
// as b holds it: a slice of b when the first record holds all of it (or
// all there is), else the fragments joined in buf.
func gather(b, buf []byte) (msg, outBuf []byte, err error) {
	if len(b) == 0 {
		return nil, buf, nil
	}
	if b[0] != recordHandshake {
		return nil, buf, ErrNotHandshake
	}
	msg = buf[:0]
	need := -1 // the message's length with its header, once known
	for pos, first := 0, true; ; first = false {
		if pos >= len(b) || b[pos] != recordHandshake {
			break // the bytes at hand end (or another record starts)
		}
		if pos+1 < len(b) && b[pos+1] != 3 {
			return nil, buf, ErrNotTLS
		}
		if len(b)-pos < recordHeaderLen {
			break
		}
		recLen := int(binary.BigEndian.Uint16(b[pos+3 : pos+5]))
		if recLen > maxRecord || recLen == 0 {
			return nil, buf, ErrMalformed
		}
		frag := b[pos+recordHeaderLen : min(pos+recordHeaderLen+recLen, len(b))]
		if first && len(frag) >= handshakeHdrLen {
			if n := handshakeHdrLen + (int(frag[1])<<16 | int(frag[2])<<8 | int(frag[3])); n <= len(frag) || len(frag) < recLen {
				return frag[:min(n, len(frag))], buf, nil // one record holds it, or all there is
			}
		}
		msg = append(msg, frag...)
		if need < 0 && len(msg) >= handshakeHdrLen {
			need = handshakeHdrLen + (int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3]))
			if need > MaxMessage {
				return nil, msg, ErrMalformed
			}
		}
		if need >= 0 && len(msg) >= need {
			return msg[:need], msg, nil
		}
		if len(frag) < recLen {
			break
		}
		pos += recordHeaderLen + recLen
	}
	return msg, msg, nil
}

func (h *Hello) truncated() error {
	h.Truncated = true
	return ErrTruncated
}

// fail records truncation and passes err on.
func (h *Hello) fail(err error) error {
	if err == ErrTruncated {
		h.Truncated = true
	}
	return err
}

func (h *Hello) parseBody(c *cursor) error {
	v, err := c.u16()
	if err != nil {
		return err
	}
	h.LegacyVersion, h.Version = uint16(v), uint16(v)
	if err := c.skip(randomLen); err != nil {
		return err
	}
	sid, err := c.u8()
	if err != nil {
		return err
	}
	if sid > maxSessionIDLen {
		return ErrMalformed
	}
	if err := c.skip(sid); err != nil {
		return err
	}
	cs, err := c.u16()
	if err != nil {
		return err
	}
	if cs < 2 || cs%2 != 0 {
		return ErrMalformed
	}
	if err := c.skip(cs); err != nil {
		return err
	}
	comp, err := c.u8()
	if err != nil {
		return err
	}
	if comp < 1 {
		return ErrMalformed
	}
	if err := c.skip(comp); err != nil {
		return err
	}
	if c.off == c.n { // no extensions (TLS 1.0-style hello)
		return nil
	}
	extLen, err := c.u16()
	if err != nil {
		return err
	}
	exts, err := c.sub(extLen)
	if err != nil {
		return err
	}
	if c.off != c.n {
		return ErrMalformed // bytes after the extensions
	}
	for exts.off < exts.n {
		typ, err := exts.u16()
		if err != nil {
			return err
		}
		n, err := exts.u16()
		if err != nil {
			return err
		}
		ext, err := exts.sub(n)
		if err != nil {
			return err
		}
		switch typ {
		case extServerName:
			err = h.parseServerName(&ext)
		case extALPN:
			err = h.parseALPN(&ext)
		case extSupportedVers:
			err = h.parseVersions(&ext)
		default: // GREASE and every other extension
			err = ext.skip(n)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// parseServerName reads the server_name extension (RFC 6066 section 3).
func (h *Hello) parseServerName(c *cursor) error {
	if h.SNI != nil {
		return ErrMalformed // a second server_name extension
	}
	n, err := c.u16()
	if err != nil {
		return err
	}
	list, err := c.sub(n)
	if err != nil {
		return err
	}
	if c.off != c.n {
		return ErrMalformed
	}
	for list.off < list.n {
		typ, err := list.u8()
		if err != nil {
			return err
		}
		n, err := list.u16()
		if err != nil {
			return err
		}
		name, err := list.bytes(n)
		if err != nil {
			return err
		}
		if typ != serverNameHost || h.SNI != nil {
			continue
		}
		if !validName(name) {
			return ErrBadServerName
		}
		h.SNI = name
	}
	return nil
}

func validName(b []byte) bool {
	if len(b) == 0 || len(b) > maxHostNameLength {
		return false
	}
	for _, c := range b {
		if c <= 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

// parseALPN reads the application_layer_protocol_negotiation extension
// (RFC 7301).
func (h *Hello) parseALPN(c *cursor) error {
	n, err := c.u16()
	if err != nil {
		return err
	}
	list, err := c.sub(n)
	if err != nil {
		return err
	}
	for list.off < list.n {
		l, err := list.u8()
		if err != nil {
			return err
		}
		if l == 0 {
			return ErrMalformed
		}
		p, err := list.bytes(l)
		if err != nil {
			return err
		}
		if h.NALPN < MaxALPN {
			h.ALPN[h.NALPN] = p
			h.NALPN++
		}
	}
	return nil
}

// parseVersions reads supported_versions (RFC 8446 section 4.2.1).
func (h *Hello) parseVersions(c *cursor) error {
	n, err := c.u8()
	if err != nil {
		return err
	}
	if n%2 != 0 {
		return ErrMalformed
	}
	list, err := c.sub(n)
	if err != nil {
		return err
	}
	best := uint16(0)
	for list.off < list.n {
		v, err := list.u16()
		if err != nil {
			return err
		}
		if !IsGREASE(uint16(v)) && uint16(v) > best {
			best = uint16(v)
		}
	}
	if best != 0 {
		h.Version = best
	}
	return nil
}

// IsGREASE reports whether v is one of the reserved GREASE values
// 0x0a0a, 0x1a1a, ..., 0xfafa (RFC 8701).
func IsGREASE(v uint16) bool { return v&0x0f0f == 0x0a0a && v>>8 == v&0xff }

// VersionName returns "TLS 1.0" ... "TLS 1.3" or "SSL 3.0" for a version
// number, or "" for others.
func VersionName(v uint16) string {
	switch v {
	case 0x0300:
		return "SSL 3.0"
	case 0x0301:
		return "TLS 1.0"
	case 0x0302:
		return "TLS 1.1"
	case 0x0303:
		return "TLS 1.2"
	case 0x0304:
		return "TLS 1.3"
	}
	return ""
}

// cursor reads a region whose declared size is n, of which the bytes b are
// at hand (len(b) <= n). Reading past n is ErrMalformed, past len(b)
// ErrTruncated.
type cursor struct {
	b   []byte
	n   int
	off int
}

func (c *cursor) need(k int) error {
	if k > c.n-c.off {
		return ErrMalformed
	}
	if k > len(c.b)-c.off {
		return ErrTruncated
	}
	return nil
}

func (c *cursor) u8() (int, error) {
	if err := c.need(1); err != nil {
		return 0, err
	}
	v := c.b[c.off]
	c.off++
	return int(v), nil
}

func (c *cursor) u16() (int, error) {
	if err := c.need(2); err != nil {
		return 0, err
	}
	v := binary.BigEndian.Uint16(c.b[c.off:])
	c.off += 2
	return int(v), nil
}

func (c *cursor) skip(k int) error {
	if err := c.need(k); err != nil {
		return err
	}
	c.off += k
	return nil
}

func (c *cursor) bytes(k int) ([]byte, error) {
	if err := c.need(k); err != nil {
		return nil, err
	}
	p := c.b[c.off : c.off+k : c.off+k]
	c.off += k
	return p, nil
}

// sub returns a cursor over the next k declared bytes (which may be only
// partly at hand) and moves past them.
func (c *cursor) sub(k int) (cursor, error) {
	if k > c.n-c.off {
		return cursor{}, ErrMalformed
	}
	s := cursor{n: k}
	if c.off < len(c.b) {
		s.b = c.b[c.off:min(c.off+k, len(c.b))]
	}
	c.off += k
	return s, nil
}

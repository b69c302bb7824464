// Package quic owns luafw's reading of QUIC Initial packets (RFC 9000,
// RFC 9001 section 5, RFC 9369 for version 2): a client's Initial is
// encrypted with keys anyone can derive from the destination connection
// ID it carries, so a middlebox can remove the header protection, decrypt
// it and read the CRYPTO frames that hold the TLS ClientHello, as DPI
// systems and evasion tools do. Versions 1 and 2 are read.
//
// Open decrypts one Initial (the first packet of a UDP datagram; Next
// walks coalesced ones) and checks its authentication tag; Frames walks the
// plaintext's frames and hands the CRYPTO frames' data by offset to the
// caller, who reassembles them across packets (luafw: package stream).
// Nothing trusts a length: every field must fit the datagram, and anything
// else is an error. Open allocates the keys for each packet (about 1 µs);
// Seal builds Initials for tests and generators.
package quic

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
)

// Versions read.
const (
	V1 uint32 = 0x00000001
	V2 uint32 = 0x6b3343cf
)

// Errors Open and Frames return.
var (
	ErrNotInitial = errors.New("quic: not a client Initial packet")
	ErrVersion    = errors.New("quic: unsupported version")
	ErrMalformed  = errors.New("quic: malformed packet")
	ErrDecrypt    = errors.New("quic: decryption failed")
)

var (
	saltV1 = []byte{0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a}
	saltV2 = []byte{0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9}
)

// Keys are a client's Initial keys.
type Keys struct {
	Key, IV, HP []byte
}

// ClientKeys derives the client Initial keys of version v from the
// destination connection ID dcid (RFC 9001 section 5.2, RFC 9369 section 3.3).
func ClientKeys(v uint32, dcid []byte) (Keys, error) {
	salt, prefix := saltV1, "quic "
	switch v {
	case V1:
	case V2:
		salt, prefix = saltV2, "quicv2 "
	default:
		return Keys{}, ErrVersion
	}
	initial, err := hkdf.Extract(sha256.New, dcid, salt)
	if err != nil {
		return Keys{}, err
	}
	client := expandLabel(initial, "client in", 32)
	return Keys{
		Key: expandLabel(client, prefix+"key", 16),
		IV:  expandLabel(client, prefix+"iv", 12),
		HP:  expandLabel(client, prefix+"hp", 16),
	}, nil
}

// expandLabel is TLS 1.3's HKDF-Expand-Label with an empty context.
func expandLabel(secret []byte, label string, n int) []byte {
	full := "tls13 " + label
	info := make([]byte, 0, 4+len(full))
	info = binary.BigEndian.AppendUint16(info, uint16(n))
	info = append(info, byte(len(full)))
	info = append(info, full...)
	info = append(info, 0)
	out, err := hkdf.Expand(sha256.New, secret, string(info), n)
	if err != nil {
		panic("quic: " + err.Error()) // n is always small
	}
	return out
}

// Header is what Open read of an Initial's header.
type Header struct {
	Version uint32
	DCID    []byte // aliases the datagram
	SCID    []byte
	PN      uint64 // the packet number, truncated as sent
}

// isInitial reports whether first byte b0 of a long header packet of
// version v is an Initial.
func isInitial(b0 byte, v uint32) bool {
	typ := b0 >> 4 & 3
	if v == V2 {
		return typ == 1
	}
	return typ == 0
}

// header reads a long header up to the packet number: where the packet
// number starts and where the packet ends.
func header(d []byte) (h Header, pnOff, end int, err error) {
	if len(d) < 7 || d[0]&0x80 == 0 {
		return h, 0, 0, ErrNotInitial
	}
	h.Version = binary.BigEndian.Uint32(d[1:5])
	if h.Version != V1 && h.Version != V2 {
		return h, 0, 0, ErrVersion
	}
	if !isInitial(d[0], h.Version) {
		return h, 0, 0, ErrNotInitial
	}
	off := 5
	n := int(d[off])
	off++
	if n > 20 || off+n > len(d) {
		return h, 0, 0, ErrMalformed
	}
	h.DCID = d[off : off+n]
	off += n
	if off >= len(d) {
		return h, 0, 0, ErrMalformed
	}
	n = int(d[off])
	off++
	if n > 20 || off+n > len(d) {
		return h, 0, 0, ErrMalformed
	}
	h.SCID = d[off : off+n]
	off += n
	tok, k := varint(d[off:])
	if k == 0 || tok > uint64(len(d)) {
		return h, 0, 0, ErrMalformed
	}
	off += k + int(tok)
	if off > len(d) {
		return h, 0, 0, ErrMalformed
	}
	length, k := varint(d[off:])
	if k == 0 || length > uint64(len(d)) {
		return h, 0, 0, ErrMalformed
	}
	off += k
	end = off + int(length)
	if end > len(d) || length < 20 { // a 4-byte sample after at most 4 bytes of packet number
		return h, 0, 0, ErrMalformed
	}
	return h, off, end, nil
}

// Open decrypts the client Initial at the start of datagram d into dst
// (appended) and returns its plaintext frames, its header and the rest of
// the datagram (coalesced packets). d is not modified.
func Open(d, dst []byte) (frames []byte, h Header, rest []byte, err error) {
	h, pnOff, end, err := header(d)
	if err != nil {
		return nil, h, nil, err
	}
	keys, err := ClientKeys(h.Version, h.DCID)
	if err != nil {
		return nil, h, nil, err
	}
	hp, err := aes.NewCipher(keys.HP)
	if err != nil {
		return nil, h, nil, err
	}
	var mask [16]byte
	hp.Encrypt(mask[:], d[pnOff+4:pnOff+20])
	b0 := d[0] ^ mask[0]&0x0f
	pnLen := int(b0&3) + 1
	hdr := append([]byte(nil), d[:pnOff+pnLen]...)
	hdr[0] = b0
	var pn uint64
	for i := range pnLen {
		hdr[pnOff+i] ^= mask[1+i]
		pn = pn<<8 | uint64(hdr[pnOff+i])
	}
	h.PN = pn
	aead, err := newAEAD(keys.Key)
	if err != nil {
		return nil, h, nil, err
	}
	out, err := aead.Open(dst, nonce(keys.IV, pn), d[pnOff+pnLen:end], hdr)
	if err != nil {
		return nil, h, nil, ErrDecrypt
	}
	return out, h, d[end:], nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func nonce(iv []byte, pn uint64) []byte {
	n := append([]byte(nil), iv...)
	for i := range 8 {
		n[len(n)-1-i] ^= byte(pn >> (8 * i))
	}
	return n
}

// Frames walks the frames of an Initial's plaintext and calls crypto for
// each CRYPTO frame. PADDING, PING and ACK frames are skipped; another
// frame type ends the walk (an Initial carries no others but
// CONNECTION_CLOSE).
func Frames(p []byte, crypto func(off uint64, data []byte)) error {
	for len(p) > 0 {
		typ, k := varint(p)
		if k == 0 {
			return ErrMalformed
		}
		p = p[k:]
		switch typ {
		case 0x00, 0x01: // PADDING, PING
		case 0x02, 0x03: // ACK
			n := 4
			if typ == 0x03 {
				n += 3
			}
			var ranges uint64
			for i := 0; i < n; i++ {
				v, k := varint(p)
				if k == 0 {
					return ErrMalformed
				}
				p = p[k:]
				if i == 2 {
					ranges = v
				}
				if i == 3 && ranges > 0 {
					if ranges > uint64(len(p)) {
						return ErrMalformed
					}
					for j := uint64(0); j < 2*ranges; j++ {
						_, k := varint(p)
						if k == 0 {
							return ErrMalformed
						}
						p = p[k:]
					}
				}
			}
		case 0x06: // CRYPTO
			off, k := varint(p)
			if k == 0 {
				return ErrMalformed
			}
			p = p[k:]
			n, k := varint(p)
			if k == 0 || n > uint64(len(p)-k) {
				return ErrMalformed
			}
			p = p[k:]
			crypto(off, p[:n])
			p = p[n:]
		default:
			return nil
		}
	}
	return nil
}

// varint reads a QUIC variable-length integer; n is 0 when b is too short.
func varint(b []byte) (v uint64, n int) {
	if len(b) == 0 {
		return 0, 0
	}
	n = 1 << (b[0] >> 6)
	if len(b) < n {
		return 0, 0
	}
	v = uint64(b[0] & 0x3f)
	for i := 1; i < n; i++ {
		v = v<<8 | uint64(b[i])
	}
	return v, n
}

// AppendVarint appends v as a QUIC variable-length integer.
func AppendVarint(b []byte, v uint64) []byte {
	switch {
	case v < 1<<6:
		return append(b, byte(v))
	case v < 1<<14:
		return binary.BigEndian.AppendUint16(b, uint16(v)|0x4000)
	case v < 1<<30:
		return binary.BigEndian.AppendUint32(b, uint32(v)|0x80000000)
	}
	return binary.BigEndian.AppendUint64(b, v|0xc0<<56)
}

// CryptoFrame returns a CRYPTO frame carrying data at offset off.
func CryptoFrame(off uint64, data []byte) []byte {
	b := AppendVarint([]byte{0x06}, off)
	b = AppendVarint(b, uint64(len(data)))
	return append(b, data...)
}

// Seal builds a client Initial of version v carrying frames, padded with
// PADDING frames to at least padTo bytes, with a 4-byte packet number pn.
// It is for tests and tools (luafw's evasion corpus).
func Seal(v uint32, dcid, scid []byte, pn uint32, frames []byte, padTo int) ([]byte, error) {
	keys, err := ClientKeys(v, dcid)
	if err != nil {
		return nil, err
	}
	typ := byte(0)
	if v == V2 {
		typ = 1
	}
	hdr := []byte{0xc0 | typ<<4 | 3}
	hdr = binary.BigEndian.AppendUint32(hdr, v)
	hdr = append(hdr, byte(len(dcid)))
	hdr = append(hdr, dcid...)
	hdr = append(hdr, byte(len(scid)))
	hdr = append(hdr, scid...)
	hdr = append(hdr, 0) // no token
	plain := append([]byte(nil), frames...)
	const tag, pnLen = 16, 4
	if n := padTo - (len(hdr) + 2 + pnLen + len(plain) + tag); n > 0 {
		plain = append(plain, make([]byte, n)...)
	}
	hdr = binary.BigEndian.AppendUint16(hdr, uint16(pnLen+len(plain)+tag)|0x4000)
	pnOff := len(hdr)
	hdr = binary.BigEndian.AppendUint32(hdr, pn)
	aead, err := newAEAD(keys.Key)
	if err != nil {
		return nil, err
	}
	pkt := aead.Seal(append([]byte(nil), hdr...), nonce(keys.IV, uint64(pn)), plain, hdr)
	hpc, err := aes.NewCipher(keys.HP)
	if err != nil {
		return nil, err
	}
	var mask [16]byte
	hpc.Encrypt(mask[:], pkt[pnOff+4:pnOff+20])
	pkt[0] ^= mask[0] & 0x0f
	for i := range pnLen {
		pkt[pnOff+i] ^= mask[1+i]
	}
	return pkt, nil
}

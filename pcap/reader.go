package pcap

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"time"
)

// File magics. Classic pcap magics are checked in both byte orders; the
// pcapng section header block type reads the same in both.
const (
	magicMicro  = 0xa1b2c3d4
	magicNano   = 0xa1b23c4d
	magicNG     = 0x0a0d0d0a
	magicNGBOM  = 0x1a2b3c4d
	classicHdr  = 24
	classicRec  = 16
	maxBlockLen = MaxCapLen + 64<<10 // largest pcapng block we buffer
)

// pcapng block types.
const (
	blockSHB = magicNG
	blockIDB = 0x00000001
	blockPB  = 0x00000002 // obsolete packet block
	blockSPB = 0x00000003
	blockEPB = 0x00000006
)

// Reader reads packets from a classic pcap or a pcapng file. It is not safe
// for concurrent use.
type Reader struct {
	br    *bufio.Reader
	off   int64 // bytes consumed from the input
	n     int   // packet records read so far
	ng    bool
	order binary.ByteOrder
	buf   []byte // record data; reused between calls to Next
	hdr   [classicRec]byte

	// classic pcap
	link uint32
	nano bool

	// pcapng: interfaces of the current section, and the first packet
	// block, read ahead by NewReader so LinkType is known at once.
	ifaces []iface
	pend   *pendingBlock
}

type pendingBlock struct {
	typ   uint32
	body  []byte
	start int64
	err   error
}

// iface is a pcapng interface description.
type iface struct {
	link   uint32
	snap   uint32
	pow2   bool  // timestamp units are 2^-exp seconds, otherwise 10^-exp
	exp    uint8 // if_tsresol exponent
	offset int64 // if_tsoffset, seconds
}

// NewReader reads the file header from r and returns a Reader for the
// packets that follow. It detects classic pcap (either byte order,
// microsecond or nanosecond timestamps) and pcapng from the magic number.
func NewReader(r io.Reader) (*Reader, error) {
	rd := &Reader{br: bufio.NewReaderSize(r, 64<<10)}
	magic, err := rd.br.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("pcap: reading file magic: %w (%w)", ErrNotCapture, err)
	}
	switch {
	case binary.BigEndian.Uint32(magic) == magicNG:
		rd.ng = true
		rd.order = binary.BigEndian // replaced by the section header's byte order
		_, body, err := rd.readBlock()
		if err == nil {
			err = rd.parseSHB(body) // typ is blockSHB: the magic matched
		}
		if err != nil {
			return nil, fmt.Errorf("pcapng: reading section header: %w", unexpected(err))
		}
		typ, body, start, err := rd.advance()
		rd.pend = &pendingBlock{typ: typ, body: body, start: start, err: err}
		return rd, nil
	case binary.BigEndian.Uint32(magic) == magicMicro || binary.BigEndian.Uint32(magic) == magicNano:
		rd.order = binary.BigEndian
	case binary.LittleEndian.Uint32(magic) == magicMicro || binary.LittleEndian.Uint32(magic) == magicNano:
		rd.order = binary.LittleEndian
	default:
		return nil, fmt.Errorf("pcap: magic %#08x: %w", binary.BigEndian.Uint32(magic), ErrNotCapture)
	}
	var h [classicHdr]byte
	if err := rd.readFull(h[:], false); err != nil {
		return nil, fmt.Errorf("pcap: reading file header: %w", err)
	}
	rd.nano = rd.order.Uint32(h[0:]) == magicNano
	if major := rd.order.Uint16(h[4:]); major != 2 {
		return nil, fmt.Errorf("pcap: file format version %d.%d: %w", major, rd.order.Uint16(h[6:]), ErrCorrupt)
	}
	// The upper bits of the link type field carry FCS information.
	rd.link = rd.order.Uint32(h[20:]) & 0xffff
	return rd, nil
}

// LinkType returns the link type of the file: the header's for classic
// pcap, the first interface's for pcapng (0 before any interface is known).
// Packet.LinkType gives each packet's own.
func (r *Reader) LinkType() uint32 {
	if r.ng {
		if len(r.ifaces) == 0 {
			return 0
		}
		return r.ifaces[0].link
	}
	return r.link
}

// Next returns the next packet record. It returns io.EOF after the last
// one. Records that are not IPv4 or IPv6 packets are returned with Data nil
// and Skipped set, so Packet.N always counts every record. A corrupt or
// truncated record gives an error naming the record and its byte offset;
// the Reader cannot continue after it.
func (r *Reader) Next() (Packet, error) {
	if r.ng {
		return r.nextNG()
	}
	start := r.off
	if err := r.readFull(r.hdr[:], true); err != nil {
		if err == io.EOF {
			return Packet{}, io.EOF
		}
		return Packet{}, r.recordErr(start, fmt.Errorf("record header: %w", err))
	}
	sec := r.order.Uint32(r.hdr[0:])
	frac := r.order.Uint32(r.hdr[4:])
	capLen := r.order.Uint32(r.hdr[8:])
	origLen := r.order.Uint32(r.hdr[12:])
	if capLen > MaxCapLen {
		return Packet{}, r.recordErr(start, fmt.Errorf("captured length %d exceeds %d: %w", capLen, MaxCapLen, ErrCorrupt))
	}
	data := r.grow(int(capLen))
	if err := r.readFull(data, false); err != nil {
		return Packet{}, r.recordErr(start, fmt.Errorf("packet data (%d bytes): %w", capLen, err))
	}
	nsec := int64(frac)
	if !r.nano {
		nsec *= 1000
	}
	r.n++
	p := Packet{
		N:        r.n,
		Time:     time.Unix(int64(sec), nsec).UTC(),
		CapLen:   int(capLen),
		OrigLen:  int(origLen),
		LinkType: r.link,
	}
	p.Data, p.Skipped = decode(r.link, data)
	return p, nil
}

func (r *Reader) nextNG() (Packet, error) {
	var (
		typ   uint32
		body  []byte
		start int64
		err   error
	)
	if r.pend != nil {
		typ, body, start, err = r.pend.typ, r.pend.body, r.pend.start, r.pend.err
		r.pend = nil
	} else {
		typ, body, start, err = r.advance()
	}
	if err != nil {
		return Packet{}, err
	}
	ifid, ts, capLen, origLen, data, err := r.parsePacketBlock(typ, body)
	if err != nil {
		return Packet{}, r.recordErr(start, err)
	}
	ifc := r.ifaces[ifid]
	r.n++
	p := Packet{
		N:         r.n,
		CapLen:    capLen,
		OrigLen:   origLen,
		LinkType:  ifc.link,
		Interface: ifid,
	}
	if typ != blockSPB {
		p.Time = ifc.time(ts)
	}
	if typ == blockEPB {
		p.Comment = r.comment(body[min(len(body), 20+(capLen+3)&^3):])
	}
	p.Data, p.Skipped = decode(ifc.link, data)
	return p, nil
}

// comment returns the first opt_comment among a packet block's options
// ("" when there is none or the options are cut short).
func (r *Reader) comment(opts []byte) string {
	for len(opts) >= 4 {
		code, n := r.order.Uint16(opts[0:]), int(r.order.Uint16(opts[2:]))
		if code == optEnd || 4+n > len(opts) {
			return ""
		}
		if code == optComment {
			return string(opts[4 : 4+n])
		}
		next := 4 + (n+3)&^3
		if next > len(opts) { // padding cut off: no further option
			return ""
		}
		opts = opts[next:]
	}
	return ""
}

// parsePacketBlock decodes an enhanced, simple or obsolete packet block.
func (r *Reader) parsePacketBlock(typ uint32, body []byte) (ifid int, ts uint64, capLen, origLen int, data []byte, err error) {
	if typ == blockSPB {
		if len(body) < 4 {
			return 0, 0, 0, 0, nil, fmt.Errorf("simple packet block of %d bytes: %w", len(body), ErrCorrupt)
		}
		if len(r.ifaces) == 0 {
			return 0, 0, 0, 0, nil, fmt.Errorf("simple packet block before any interface description: %w", ErrCorrupt)
		}
		orig := r.order.Uint32(body)
		n := uint32(len(body) - 4)
		if orig < n {
			n = orig
		}
		if snap := r.ifaces[0].snap; snap != 0 && snap < n {
			n = snap
		}
		return 0, 0, int(n), int(orig), body[4 : 4+n], nil
	}
	if len(body) < 20 {
		return 0, 0, 0, 0, nil, fmt.Errorf("packet block of %d bytes: %w", len(body), ErrCorrupt)
	}
	id := r.order.Uint32(body)
	if typ == blockPB {
		id = uint32(r.order.Uint16(body))
	}
	ts = uint64(r.order.Uint32(body[4:]))<<32 | uint64(r.order.Uint32(body[8:]))
	cl := r.order.Uint32(body[12:])
	ol := r.order.Uint32(body[16:])
	if id >= uint32(len(r.ifaces)) {
		return 0, 0, 0, 0, nil, fmt.Errorf("interface %d not described (%d known): %w", id, len(r.ifaces), ErrCorrupt)
	}
	if cl > MaxCapLen {
		return 0, 0, 0, 0, nil, fmt.Errorf("captured length %d exceeds %d: %w", cl, MaxCapLen, ErrCorrupt)
	}
	if uint64(cl) > uint64(len(body)-20) {
		return 0, 0, 0, 0, nil, fmt.Errorf("captured length %d overruns the %d-byte block: %w", cl, len(body)+12, ErrCorrupt)
	}
	return int(id), ts, int(cl), int(ol), body[20 : 20+cl], nil
}

// advance reads pcapng blocks, applying section headers and interface
// descriptions, until it reaches a packet block, which it returns.
func (r *Reader) advance() (typ uint32, body []byte, start int64, err error) {
	for {
		start = r.off
		typ, body, err = r.readBlock()
		if err != nil {
			switch typ {
			case 0:
				if err == io.EOF {
					return 0, nil, start, io.EOF
				}
			case blockEPB, blockSPB, blockPB:
				return typ, nil, start, r.recordErr(start, err)
			}
			return typ, nil, start, r.blockErr(start, err)
		}
		switch typ {
		case blockSHB:
			if err := r.parseSHB(body); err != nil {
				return typ, nil, start, r.blockErr(start, err)
			}
		case blockIDB:
			if err := r.parseIDB(body); err != nil {
				return typ, nil, start, r.blockErr(start, err)
			}
		case blockEPB, blockSPB, blockPB:
			return typ, body, start, nil
		}
	}
}

// readBlock reads one pcapng block and returns its type and body (the bytes
// between the length fields). Blocks the reader does not use are skipped
// and returned with a nil body. A clean end of input gives io.EOF.
func (r *Reader) readBlock() (uint32, []byte, error) {
	var h [8]byte
	if err := r.readFull(h[:], true); err != nil {
		return 0, nil, err
	}
	if binary.BigEndian.Uint32(h[:]) == magicNG {
		// A section header: its byte-order magic fixes the byte order of
		// its own length field and of everything up to the next one.
		bom, err := r.br.Peek(4)
		if err != nil {
			return 0, nil, fmt.Errorf("section header byte-order magic: %w", unexpected(err))
		}
		switch {
		case binary.BigEndian.Uint32(bom) == magicNGBOM:
			r.order = binary.BigEndian
		case binary.LittleEndian.Uint32(bom) == magicNGBOM:
			r.order = binary.LittleEndian
		default:
			return 0, nil, fmt.Errorf("section header byte-order magic %#08x: %w", binary.BigEndian.Uint32(bom), ErrCorrupt)
		}
	}
	typ := r.order.Uint32(h[0:])
	total := r.order.Uint32(h[4:])
	if total < 12 || total%4 != 0 {
		return typ, nil, fmt.Errorf("block type %#x: length %d: %w", typ, total, ErrCorrupt)
	}
	bodyLen := int64(total) - 12
	switch typ {
	case blockSHB, blockIDB, blockEPB, blockSPB, blockPB:
	default:
		n, err := io.CopyN(io.Discard, r.br, bodyLen+4)
		r.off += n
		if err != nil {
			return typ, nil, fmt.Errorf("block type %#x of %d bytes: %w", typ, total, unexpected(err))
		}
		return typ, nil, nil
	}
	if bodyLen > maxBlockLen {
		return typ, nil, fmt.Errorf("block type %#x: length %d exceeds %d: %w", typ, total, maxBlockLen, ErrCorrupt)
	}
	body := r.grow(int(bodyLen))
	if err := r.readFull(body, false); err != nil {
		return typ, nil, fmt.Errorf("block type %#x of %d bytes: %w", typ, total, err)
	}
	var t [4]byte
	if err := r.readFull(t[:], false); err != nil {
		return typ, nil, fmt.Errorf("block type %#x trailer: %w", typ, err)
	}
	if tl := r.order.Uint32(t[:]); tl != total {
		return typ, nil, fmt.Errorf("block type %#x: trailing length %d differs from leading length %d: %w", typ, tl, total, ErrCorrupt)
	}
	return typ, body, nil
}

func (r *Reader) parseSHB(body []byte) error {
	if len(body) < 16 {
		return fmt.Errorf("section header of %d bytes: %w", len(body)+12, ErrCorrupt)
	}
	if major := r.order.Uint16(body[4:]); major != 1 {
		return fmt.Errorf("pcapng version %d.%d: %w", major, r.order.Uint16(body[6:]), ErrCorrupt)
	}
	r.ifaces = r.ifaces[:0]
	return nil
}

func (r *Reader) parseIDB(body []byte) error {
	if len(body) < 8 {
		return fmt.Errorf("interface description of %d bytes: %w", len(body)+12, ErrCorrupt)
	}
	ifc := iface{
		link: uint32(r.order.Uint16(body[0:])),
		snap: r.order.Uint32(body[4:]),
		exp:  6,
	}
	opts := body[8:]
	for len(opts) >= 4 {
		code, n := r.order.Uint16(opts[0:]), int(r.order.Uint16(opts[2:]))
		if code == 0 { // opt_endofopt
			break
		}
		padded := (n + 3) &^ 3
		if 4+padded > len(opts) {
			return fmt.Errorf("interface %d: option %d of %d bytes overruns the block: %w", len(r.ifaces), code, n, ErrCorrupt)
		}
		val := opts[4 : 4+n]
		switch {
		case code == 9 && n >= 1: // if_tsresol
			ifc.pow2 = val[0]&0x80 != 0
			ifc.exp = val[0] & 0x7f
			if (ifc.pow2 && ifc.exp > 63) || (!ifc.pow2 && ifc.exp > 19) {
				return fmt.Errorf("interface %d: timestamp resolution %#02x not supported: %w", len(r.ifaces), val[0], ErrCorrupt)
			}
		case code == 14 && n == 8: // if_tsoffset
			ifc.offset = int64(r.order.Uint64(val))
		}
		opts = opts[4+padded:]
	}
	r.ifaces = append(r.ifaces, ifc)
	return nil
}

var pow10 = [20]uint64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19}

// time converts a timestamp in the interface's units to a time.
func (ifc iface) time(ts uint64) time.Time {
	var sec, nsec uint64
	if ifc.pow2 {
		units := uint64(1) << ifc.exp
		sec = ts >> ifc.exp
		hi, lo := bits.Mul64(ts&(units-1), 1e9)
		nsec, _ = bits.Div64(hi, lo, units) // hi < units: the fraction is below units
	} else {
		units := pow10[ifc.exp]
		sec, nsec = ts/units, ts%units
		if ifc.exp <= 9 {
			nsec *= pow10[9-ifc.exp]
		} else {
			nsec /= pow10[ifc.exp-9]
		}
	}
	return time.Unix(int64(sec)+ifc.offset, int64(nsec)).UTC()
}

// readFull fills p from the input. At the start of a record, an input
// that ends before p's first byte gives io.EOF; any other short read gives
// io.ErrUnexpectedEOF.
func (r *Reader) readFull(p []byte, atStart bool) error {
	n, err := io.ReadFull(r.br, p)
	r.off += int64(n)
	if err == io.EOF && !atStart {
		return io.ErrUnexpectedEOF
	}
	return err
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// grow returns r.buf resized to n bytes, reallocating only when needed.
func (r *Reader) grow(n int) []byte {
	if cap(r.buf) < n {
		r.buf = make([]byte, n, max(n, 2*cap(r.buf), 2048))
	}
	return r.buf[:n]
}

func (r *Reader) recordErr(start int64, err error) error {
	kind := "pcap"
	if r.ng {
		kind = "pcapng"
	}
	return fmt.Errorf("%s: record %d at byte offset %d: %w", kind, r.n+1, start, err)
}

func (r *Reader) blockErr(start int64, err error) error {
	return fmt.Errorf("pcapng: block at byte offset %d (before record %d): %w", start, r.n+1, err)
}

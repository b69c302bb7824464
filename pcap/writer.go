package pcap

import (
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

// Writer writes a classic pcap file with microsecond timestamps, in
// little-endian byte order. It is not safe for concurrent use.
type Writer struct {
	w   io.Writer
	buf []byte
}

// NewWriter writes a pcap file header for the given link type (usually
// LinkTypeRaw for bare IPv4/IPv6 packets, or LinkTypeEthernet for full
// frames) and returns a Writer for the packets.
func NewWriter(w io.Writer, linkType uint32) (*Writer, error) {
	h := make([]byte, classicHdr)
	binary.LittleEndian.PutUint32(h[0:], magicMicro)
	binary.LittleEndian.PutUint16(h[4:], 2) // version 2.4
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], MaxCapLen) // snaplen
	binary.LittleEndian.PutUint32(h[20:], linkType)
	if _, err := w.Write(h); err != nil {
		return nil, fmt.Errorf("pcap: writing file header: %w", err)
	}
	return &Writer{w: w, buf: h[:0]}, nil
}

// WritePacket writes one packet record with timestamp t (truncated to the
// microsecond). data is the whole packet as the link type frames it; its
// captured and original lengths are both len(data).
func (w *Writer) WritePacket(t time.Time, data []byte) error {
	if len(data) > MaxCapLen {
		return fmt.Errorf("pcap: packet of %d bytes exceeds %d", len(data), MaxCapLen)
	}
	sec := t.Unix()
	if sec < 0 || sec > 1<<32-1 {
		return fmt.Errorf("pcap: timestamp %v outside the pcap range (1970 to 2106)", t)
	}
	b := w.buf[:classicRec]
	binary.LittleEndian.PutUint32(b[0:], uint32(sec))
	binary.LittleEndian.PutUint32(b[4:], uint32(t.Nanosecond()/1000))
	binary.LittleEndian.PutUint32(b[8:], uint32(len(data)))
	binary.LittleEndian.PutUint32(b[12:], uint32(len(data)))
	w.buf = append(b, data...)
	if _, err := w.w.Write(w.buf); err != nil {
		return fmt.Errorf("pcap: writing packet: %w", err)
	}
	return nil
}

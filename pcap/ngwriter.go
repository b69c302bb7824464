package pcap

import (
	"encoding/binary"
	"math"
	"time"
)

// pcapng option codes the writer uses.
const (
	optEnd      = 0
	optComment  = 1
	optTSResol  = 9
	ngTSResolNS = 9 // if_tsresol: 10^-9 s
)

// NGHeader returns the start of a pcapng file: a section header and one
// interface description of the given link type and snap length, with
// nanosecond timestamps. Packets appended with AppendNGPacket follow it; a
// file may be cut after any packet and stays readable.
func NGHeader(linkType uint32, snapLen uint32) []byte {
	le := binary.LittleEndian
	b := make([]byte, 0, 28+32)
	// Section header block: byte-order magic, version 1.0, unknown length.
	b = le.AppendUint32(b, blockSHB)
	b = le.AppendUint32(b, 28)
	b = le.AppendUint32(b, magicNGBOM)
	b = le.AppendUint16(b, 1)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint64(b, math.MaxUint64) // section length -1: not given
	b = le.AppendUint32(b, 28)
	// Interface description block with if_tsresol.
	b = le.AppendUint32(b, blockIDB)
	b = le.AppendUint32(b, 32)
	b = le.AppendUint16(b, uint16(linkType))
	b = le.AppendUint16(b, 0)
	b = le.AppendUint32(b, snapLen)
	b = le.AppendUint16(b, optTSResol)
	b = le.AppendUint16(b, 1)
	b = append(b, ngTSResolNS, 0, 0, 0)
	b = le.AppendUint32(b, optEnd) // code and length 0
	b = le.AppendUint32(b, 32)
	return b
}

// AppendNGPacket appends an enhanced packet block for interface 0 to b:
// data as captured, origLen the packet's length on the wire (len(data)
// when 0), and comment, when not empty, as its opt_comment (shown by
// `tcpdump -r` with -v and by Wireshark as the packet comment). Timestamps
// are in nanoseconds, as NGHeader's interface says.
func AppendNGPacket(b []byte, t time.Time, data []byte, origLen int, comment string) []byte {
	le := binary.LittleEndian
	if origLen < len(data) {
		origLen = len(data)
	}
	if len(comment) > 0xffff-3 {
		comment = comment[:0xffff-3]
	}
	pad := func(n int) int { return (n + 3) &^ 3 }
	total := 32 + pad(len(data)) + 4
	if comment != "" {
		total += 4 + pad(len(comment))
	}
	ts := uint64(t.UnixNano())
	b = le.AppendUint32(b, blockEPB)
	b = le.AppendUint32(b, uint32(total))
	b = le.AppendUint32(b, 0) // interface
	b = le.AppendUint32(b, uint32(ts>>32))
	b = le.AppendUint32(b, uint32(ts))
	b = le.AppendUint32(b, uint32(len(data)))
	b = le.AppendUint32(b, uint32(origLen))
	b = append(b, data...)
	b = append(b, make([]byte, pad(len(data))-len(data))...)
	if comment != "" {
		b = le.AppendUint16(b, optComment)
		b = le.AppendUint16(b, uint16(len(comment)))
		b = append(b, comment...)
		b = append(b, make([]byte, pad(len(comment))-len(comment))...)
	}
	b = le.AppendUint32(b, optEnd)
	b = le.AppendUint32(b, uint32(total))
	return b
}

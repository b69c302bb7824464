// Package pcap owns luafw's offline packet input and output: a reader for
// classic pcap and pcapng capture files that hands out packets starting at
// their IP header, a writer for classic pcap files and the pieces of pcapng files
// (NGHeader, AppendNGPacket) that luafw's packet capture writes, and Flows, a tiny
// offline connection tracker that gives replayed packets a conntrack state.
//
// It depends only on the standard library, uses no cgo and never panics on
// corrupt input: bad files give errors naming the record and byte offset.
package pcap

import (
	"errors"
	"time"
)

// Link types (LINKTYPE_* values from tcpdump.org) the reader understands.
const (
	LinkTypeNull      uint32 = 0   // BSD loopback: 4-byte address family in the capturing host's byte order
	LinkTypeEthernet  uint32 = 1   // Ethernet II, optionally with up to two 802.1Q/802.1ad tags
	LinkTypeRawOld    uint32 = 12  // raw IPv4 or IPv6 (the DLT_RAW value used by some writers)
	LinkTypeRaw       uint32 = 101 // raw IPv4 or IPv6
	LinkTypeLoop      uint32 = 108 // OpenBSD loopback: 4-byte big-endian address family
	LinkTypeLinuxSLL  uint32 = 113 // Linux cooked capture v1
	LinkTypeIPv4      uint32 = 228 // raw IPv4 only
	LinkTypeIPv6      uint32 = 229 // raw IPv6 only
	LinkTypeLinuxSLL2 uint32 = 276 // Linux cooked capture v2
)

// MaxCapLen is the largest captured length of one packet the reader accepts
// and the writer writes; larger records are treated as corruption.
const MaxCapLen = 256 << 10

var (
	// ErrNotCapture is returned by NewReader for input that is neither a
	// classic pcap nor a pcapng file.
	ErrNotCapture = errors.New("not a pcap or pcapng file")
	// ErrCorrupt is wrapped by errors about impossible values in a file
	// (oversized or misaligned records, unknown interfaces, bad versions).
	// Truncated files wrap io.ErrUnexpectedEOF instead.
	ErrCorrupt = errors.New("corrupt capture file")
)

// Packet is one packet record of a capture file.
type Packet struct {
	// N is the 1-based index of the record among all packet records of the
	// file, skipped ones included, so it matches the frame number tcpdump
	// and Wireshark show.
	N int
	// Time is the capture timestamp (zero for pcapng simple packet blocks,
	// which carry none).
	Time time.Time
	// Data is the packet from its IP header on, with link-layer padding
	// and trailers cut off at the IP total length. It is nil when the record
	// is skipped, and valid only until the next call to Reader.Next.
	Data []byte
	// CapLen and OrigLen are the record's captured and original lengths,
	// link-layer header included.
	CapLen, OrigLen int
	// LinkType is the link type of the record's interface.
	LinkType uint32
	// Interface is the pcapng interface ID of the record (0 for classic pcap).
	Interface int
	// Comment is the record's opt_comment (pcapng enhanced packet blocks;
	// luafw's capture names the plugin, callback, hook and verdict there).
	Comment string
	// Skipped says why Data is nil: the record is not an IPv4 or IPv6
	// packet ("not IP: ethertype 0x0806"), its link type is unsupported, or
	// its link-layer header is cut short. Empty for IP packets.
	Skipped string
}

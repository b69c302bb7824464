package pcap

import (
	"net/netip"
	"time"

	"github.com/luafw/luafw/host/packet"
)

// TCP header flag bits (byte 13 of the TCP header), as Observe expects
// them: host/packet's.
const (
	TCPFin = packet.TCPFin
	TCPSyn = packet.TCPSyn
	TCPRst = packet.TCPRst
	TCPPsh = packet.TCPPsh
	TCPAck = packet.TCPAck
)

// Connection states Observe returns, spelled as nftables' "ct state".
const (
	StateNew         = "new"
	StateEstablished = "established"
	StateRelated     = "related"
	StateInvalid     = "invalid"
)

const protoTCP = 6

// FlowKey identifies a flow in both directions: A is the smaller of the two
// endpoints (netip.AddrPort.Compare), so a packet and its reply share a key.
type FlowKey struct {
	Proto uint8
	A, B  netip.AddrPort
}

// NewFlowKey returns the canonical key of a packet's flow.
func NewFlowKey(proto uint8, src, dst netip.Addr, sport, dport uint16) FlowKey {
	a, b := netip.AddrPortFrom(src, sport), netip.AddrPortFrom(dst, dport)
	if b.Compare(a) < 0 {
		a, b = b, a
	}
	return FlowKey{Proto: proto, A: a, B: b}
}

// Flow is one tracked connection, the offline counterpart of a conntrack
// entry. Mark, Labels and Timeout belong to the caller (a replayed script
// sets and reads them); the tracker only creates flows and counts packets.
// Timeout is stored, not enforced: flows never expire.
type Flow struct {
	Key     FlowKey
	Mark    uint32
	Labels  [2]uint64
	Timeout time.Duration
	Packets int // packets seen in both directions, related ones excluded

	orig    netip.AddrPort // the endpoint that sent the first packet
	replied bool
	// TCP teardown, to let a new SYN reopen a closed connection.
	finOrig, finReply, rst bool
}

// Orig returns the endpoint that opened the flow (conntrack's original
// direction source).
func (fl *Flow) Orig() netip.AddrPort { return fl.orig }

// Replied reports whether a packet in the reply direction has been seen.
func (fl *Flow) Replied() bool { return fl.replied }

// Flows is an offline connection tracker for replaying captures: it gives
// each packet the ct state Linux conntrack would, in its default
// configuration, for the same packet sequence. It is not safe for
// concurrent use.
type Flows struct {
	m map[FlowKey]*Flow
}

// NewFlows returns an empty tracker.
func NewFlows() *Flows { return &Flows{m: make(map[FlowKey]*Flow)} }

// Len returns the number of flows tracked.
func (f *Flows) Len() int { return len(f.m) }

// Lookup returns the flow a packet belongs to, or nil, without recording
// the packet.
func (f *Flows) Lookup(proto uint8, src, dst netip.Addr, sport, dport uint16) *Flow {
	return f.m[NewFlowKey(proto, src, dst, sport, dport)]
}

// Observe records one packet and returns its flow and ct state. Ports are
// the TCP/UDP/SCTP ports; for ICMP and ICMPv6 echo requests and replies
// pass the echo identifier as both ports, and 0 for protocols without
// ports. tcpFlags is byte 13 of the TCP header (ignored for other
// protocols).
//
// The state is StateNew for the first packet of a flow and for later ones
// in the same direction until a reply is seen, and StateEstablished from
// the first reply packet on, in both directions. A TCP flow may start with
// a SYN, or with a bare ACK (a connection picked up mid-stream), as Linux
// does with its default nf_conntrack_tcp_loose=1. A first TCP packet with
// SYN+ACK, FIN or RST, or no flags, is StateInvalid and returns a nil flow:
// like conntrack, the tracker creates no entry for it. A SYN after a TCP
// flow was closed (RST, or FIN both ways) starts a fresh flow.
func (f *Flows) Observe(proto uint8, src, dst netip.Addr, sport, dport uint16, tcpFlags uint8) (*Flow, string) {
	key := NewFlowKey(proto, src, dst, sport, dport)
	from := netip.AddrPortFrom(src, sport)
	fl := f.m[key]
	if fl != nil && proto == protoTCP && fl.closed() && tcpFlags&(TCPSyn|TCPAck|TCPRst|TCPFin) == TCPSyn {
		fl = nil // reopening: the old entry is replaced
	}
	if fl == nil {
		if proto == protoTCP && !tcpCanOpen(tcpFlags) {
			return nil, StateInvalid
		}
		fl = &Flow{Key: key, orig: from}
		f.m[key] = fl
	}
	fl.Packets++
	reply := from != fl.orig
	if reply {
		fl.replied = true
	}
	if proto == protoTCP {
		switch {
		case tcpFlags&TCPRst != 0:
			fl.rst = true
		case tcpFlags&TCPFin != 0 && reply:
			fl.finReply = true
		case tcpFlags&TCPFin != 0:
			fl.finOrig = true
		}
	}
	if fl.replied {
		return fl, StateEstablished
	}
	return fl, StateNew
}

// ObserveICMPError classifies an ICMP or ICMPv6 error (destination
// unreachable, time exceeded, packet too big, parameter problem) from the
// packet it quotes: pass the quoted packet's protocol, addresses and ports.
// If that packet belongs to a known flow the error is StateRelated to it;
// otherwise it is StateInvalid and the flow is nil, as in conntrack.
// Related packets are not counted in Flow.Packets.
func (f *Flows) ObserveICMPError(proto uint8, src, dst netip.Addr, sport, dport uint16) (*Flow, string) {
	if fl := f.Lookup(proto, src, dst, sport, dport); fl != nil {
		return fl, StateRelated
	}
	return nil, StateInvalid
}

// tcpCanOpen reports whether a TCP packet with these flags may create a
// conntrack entry (Linux tcp_new with nf_conntrack_tcp_loose=1): a SYN, or
// an ACK without SYN, FIN or RST.
func tcpCanOpen(flags uint8) bool {
	switch flags & (TCPSyn | TCPAck | TCPFin | TCPRst) {
	case TCPSyn, TCPAck:
		return true
	}
	return false
}

func (fl *Flow) closed() bool { return fl.rst || (fl.finOrig && fl.finReply) }

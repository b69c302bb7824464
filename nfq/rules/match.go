package rules

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/luafw/luafw/netfilter"
)

// Matches narrow a diversion to the packets some callback wants: each one
// becomes a rule of the base chain that jumps to the queueing chain (see
// Diversion.selectors), so a packet is queued when it passes the Filter
// and at least one Match (the exact union of the callbacks' matches, as
// nftables evaluates rules in order and the first jump wins).

// PortRange is an inclusive range of transport ports.
type PortRange struct{ Lo, Hi uint16 }

// Match is the packets one callback of a diversion wants. Empty fields
// match every packet.
type Match struct {
	// Protos are IP protocol numbers (meta l4proto). With ports the
	// default is the protocols that have ports; with TCP flags, TCP.
	Protos         []uint8
	SPorts, DPorts []PortRange
	// InIfaces, OutIfaces are interface names, a trailing "*" a prefix.
	InIfaces, OutIfaces []string
	// Src, Dst are address prefixes (an interval set for several).
	Src, Dst []netip.Prefix
	// CTStates (netfilter.CTNew..CTUntracked) and MaxPackets (ct packets <=
	// MaxPackets; 0: no limit) apply only in a ByState diversion: before
	// the conntrack stage, or without conntrack, a packet has no entry and
	// the match diverts it regardless (never narrower than wanted).
	CTStates []netfilter.CTState
	// TCPFlagsMask, TCPFlags: tcp flags & TCPFlagsMask == TCPFlags.
	TCPFlagsMask, TCPFlags uint8
	MaxPackets             uint64
	// Cgroup is a cgroup v2 path ("system.slice/nginx.service"): packets
	// whose local socket is in it or below it (`socket cgroupv2`; output
	// and postrouting). The cgroup must exist when the rules are built
	// (cgroup.go).
	Cgroup string

	cgroupLevel int    // of Cgroup, filled by resolveCgroups
	cgroupID    uint64 // likewise
}

// protos returns the protocols the match's rule checks.
func (m Match) protos() []uint8 {
	switch {
	case m.TCPFlagsMask != 0:
		return []uint8{unix.IPPROTO_TCP}
	case len(m.Protos) == 0 && len(m.SPorts)+len(m.DPorts) > 0:
		return portProtos
	}
	return m.Protos
}

// filter is the part of m a Filter can say, for its checks.
func (m Match) filter() Filter {
	return Filter{Protos: m.protos(), InIfaces: m.InIfaces, OutIfaces: m.OutIfaces, Src: m.Src, Dst: m.Dst}
}

func (m Match) check() error {
	if len(m.SPorts)+len(m.DPorts) > 0 {
		for _, p := range m.protos() {
			if !slices.Contains(portProtos, p) {
				return fmt.Errorf("match: ports with protocol %s, which has no ports", protoName(p))
			}
		}
	}
	if m.TCPFlagsMask != 0 && len(m.Protos) > 0 && !slices.Contains(m.Protos, unix.IPPROTO_TCP) {
		return fmt.Errorf("match: tcp flags without tcp among its protocols")
	}
	for _, r := range slices.Concat(m.SPorts, m.DPorts) {
		if r.Lo > r.Hi {
			return fmt.Errorf("match: empty port range %d-%d", r.Lo, r.Hi)
		}
	}
	for _, s := range m.CTStates {
		if s == netfilter.CTUnknown || int(s) > netfilter.NumCTStates {
			return fmt.Errorf("match: conntrack state %d is not one a packet can have", s)
		}
	}
	if err := m.filter().check(); err != nil {
		return fmt.Errorf("match: %w", err)
	}
	return nil
}

// rule appends m's matches for family fam to r; withCT adds the conntrack
// ones.
func (m Match) rule(r *nftRuleIR, fam int, withCT bool) {
	f := m.filter()
	var famProtos []uint8
	for _, p := range f.Protos {
		if (p == unix.IPPROTO_ICMP && fam == 6) || (p == unix.IPPROTO_ICMPV6 && fam == 4) {
			continue
		}
		famProtos = append(famProtos, p)
	}
	if len(famProtos) > 0 {
		matchL4Proto(r, famProtos)
	}
	matchPortRanges(r, "sport", 0, m.SPorts)
	matchPortRanges(r, "dport", 2, m.DPorts)
	if m.TCPFlagsMask != 0 {
		r.add(fmt.Sprintf("tcp flags & %#02x == %#02x", m.TCPFlagsMask, m.TCPFlags),
			&expr.Payload{DestRegister: nftReg, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
			&expr.Bitwise{SourceRegister: nftReg, DestRegister: nftReg, Len: 1, Mask: []byte{m.TCPFlagsMask}, Xor: []byte{0}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: nftReg, Data: []byte{m.TCPFlags}})
	}
	matchIfaces(r, "iifname", expr.MetaKeyIIFNAME, m.InIfaces)
	matchIfaces(r, "oifname", expr.MetaKeyOIFNAME, m.OutIfaces)
	matchAddrs(r, fam, "saddr", m.Src)
	matchAddrs(r, fam, "daddr", m.Dst)
	m.cgroupRule(r) // cgroup.go
	if !withCT {
		return
	}
	if len(m.CTStates) > 0 {
		var mask uint32
		var names []string
		for _, s := range netfilter.CTStates() {
			if slices.Contains(m.CTStates, s) {
				mask |= stateBit(s)
				names = append(names, s.String())
			}
		}
		r.add("ct state "+strings.Join(names, ","),
			&expr.Ct{Key: expr.CtKeySTATE, Register: nftReg}, andMask(mask),
			&expr.Cmp{Op: expr.CmpOpNeq, Register: nftReg, Data: make([]byte, 4)})
	}
	if m.MaxPackets > 0 {
		// The counter is a host-order u64; ordered comparisons work on
		// big-endian bytes, as nft does it.
		r.add(fmt.Sprintf("ct packets <= %d", m.MaxPackets),
			&expr.Ct{Key: expr.CtKeyPKTS, Register: nftReg},
			&expr.Byteorder{SourceRegister: nftReg, DestRegister: nftReg, Op: expr.ByteorderHton, Len: 8, Size: 8},
			&expr.Cmp{Op: expr.CmpOpLte, Register: nftReg, Data: binary.BigEndian.AppendUint64(nil, m.MaxPackets)})
	}
}

// matchPortRanges matches a port field against ranges: single ports as
// matchPorts does, else a comparison pair or an interval set.
func matchPortRanges(r *nftRuleIR, field string, offset uint32, ranges []PortRange) {
	if len(ranges) == 0 {
		return
	}
	if !slices.ContainsFunc(ranges, func(pr PortRange) bool { return pr.Lo != pr.Hi }) {
		ports := make([]uint16, len(ranges))
		for i, pr := range ranges {
			ports[i] = pr.Lo
		}
		matchPorts(r, field, offset, ports)
		return
	}
	load := &expr.Payload{DestRegister: nftReg, Base: expr.PayloadBaseTransportHeader, Offset: offset, Len: 2}
	if len(ranges) == 1 {
		pr := ranges[0]
		r.add(fmt.Sprintf("th %s %d-%d", field, pr.Lo, pr.Hi), load,
			&expr.Cmp{Op: expr.CmpOpGte, Register: nftReg, Data: binaryutil.BigEndian.PutUint16(pr.Lo)},
			&expr.Cmp{Op: expr.CmpOpLte, Register: nftReg, Data: binaryutil.BigEndian.PutUint16(pr.Hi)})
		return
	}
	r.add("", load)
	var ivs []addrInterval
	var names []string
	for _, pr := range ranges {
		var hi []byte
		if pr.Hi < 0xffff {
			hi = binaryutil.BigEndian.PutUint16(pr.Hi + 1)
		}
		ivs = append(ivs, addrInterval{binaryutil.BigEndian.PutUint16(pr.Lo), hi})
		if pr.Lo == pr.Hi {
			names = append(names, strconv.Itoa(int(pr.Lo)))
		} else {
			names = append(names, fmt.Sprintf("%d-%d", pr.Lo, pr.Hi))
		}
	}
	matchLookup(r, "th "+field, nftables.TypeInetService, true, intervalElems(ivs, 2), names)
}

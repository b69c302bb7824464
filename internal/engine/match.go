package engine

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/luafw/luafw/host/netset"
	"github.com/luafw/luafw/host/packet"
	"github.com/luafw/luafw/netfilter"
)

// Declarative matches: what packets a callback wants. The engine checks a
// callback's match in Go before calling it (no allocation, no Lua), and the
// daemon turns the matches of a diversion's callbacks into its nftables
// rule, so packets no callback wants never leave the kernel.
//
// A field left empty admits every packet; the fields that are set must all
// admit a packet. A packet value the engine was not told (conntrack state
// or packet count without conntrack) admits the packet: the callback, not
// the match, then decides.

// PortRange is an inclusive range of transport ports.
type PortRange struct{ Lo, Hi uint16 }

func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return fmt.Sprintf("%d-%d", r.Lo, r.Hi)
}

// Match is the packets a callback wants. The zero Match admits every
// packet (a callback without a match).
type Match struct {
	// Protos are IP protocol numbers (after IPv6 extension headers).
	Protos []uint8
	// SPorts, DPorts are port ranges; with them only TCP, UDP, UDP-Lite and
	// SCTP packets match (and, in the kernel, DCCP).
	SPorts, DPorts []PortRange
	// Src, Dst are address sets (CIDRs or a net.set); nil admits any.
	Src, Dst *netset.Set
	// CTStates are the conntrack states admitted.
	CTStates []CTState
	// InIfaces, OutIfaces are interface names; a trailing "*" matches a
	// prefix ("veth*"). A packet without that interface does not match.
	InIfaces, OutIfaces []string
	// TCPFlagsMask, TCPFlags: a TCP packet whose flags&TCPFlagsMask equal
	// TCPFlags ("syn,!ack": mask SYN|ACK, flags SYN). A mask makes the
	// match TCP-only.
	TCPFlagsMask, TCPFlags uint8
	// First admits the packets of a connection while it has carried at
	// most First packets in its original direction (conntrack's
	// `ct original packets`); 0 means no limit.
	First uint64
	// Cgroup admits locally generated packets whose socket is in this
	// cgroup v2 or below it ("system.slice/nginx.service"); output and
	// postrouting only (cgroup.go).
	Cgroup string
}

// IsZero reports whether m admits every packet.
func (m *Match) IsZero() bool {
	return m == nil || len(m.Protos)+len(m.SPorts)+len(m.DPorts)+len(m.CTStates)+len(m.InIfaces)+len(m.OutIfaces) == 0 &&
		m.Src == nil && m.Dst == nil && m.TCPFlagsMask == 0 && m.First == 0 && m.Cgroup == ""
}

// portProtos are the protocols whose ports the engine decodes.
var portProtos = []uint8{packet.ProtoTCP, packet.ProtoUDP, packet.ProtoUDPLite, packet.ProtoSCTP}

// matcher is a compiled Match: what the packet path checks. It never
// changes once built and is shared by all workers.
type matcher struct {
	m        Match
	protos   [4]uint64 // bit p: protocol p admitted; all set when any
	ports    bool      // the packet must have ports
	tcp      bool      // the packet must be TCP with a header
	states   uint8     // bit s: CTState s admitted; 0 = any
	in, out  []string
	src, dst *netset.Set
}

// compile checks m and builds its matcher; nil for a zero match.
func (m Match) compile() (*matcher, error) {
	if m.IsZero() {
		return nil, nil
	}
	c := &matcher{m: m, in: m.InIfaces, out: m.OutIfaces, src: m.Src, dst: m.Dst}
	protos := m.Protos
	if m.TCPFlagsMask != 0 {
		if len(protos) > 0 && !slices.Contains(protos, packet.ProtoTCP) {
			return nil, fmt.Errorf("tcp_flags with protocols %s, which do not include tcp", protoList(protos))
		}
		if m.TCPFlags&^m.TCPFlagsMask != 0 {
			return nil, fmt.Errorf("tcp flags %#x outside their mask %#x", m.TCPFlags, m.TCPFlagsMask)
		}
		protos, c.tcp = []uint8{packet.ProtoTCP}, true
	}
	for _, r := range slices.Concat(m.SPorts, m.DPorts) {
		if r.Lo > r.Hi {
			return nil, fmt.Errorf("port range %d-%d is empty", r.Lo, r.Hi)
		}
	}
	if len(m.SPorts)+len(m.DPorts) > 0 {
		c.ports = true
		if len(protos) == 0 {
			protos = portProtos
		}
		for _, p := range protos {
			if !slices.Contains(portProtos, p) {
				return nil, fmt.Errorf("ports with protocol %s, which has none", packet.ProtoName(p))
			}
		}
	}
	if len(protos) == 0 {
		c.protos = [4]uint64{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)}
	}
	for _, p := range protos {
		c.protos[p>>6] |= 1 << (p & 63)
	}
	for _, s := range m.CTStates {
		if s == CTUnknown || int(s) >= len(ctStateNames) {
			return nil, fmt.Errorf("conntrack state %d is not one a packet can have", s)
		}
		c.states |= 1 << s
	}
	if m.Cgroup != "" {
		p, _, err := netfilter.CheckCgroupPath(m.Cgroup)
		if err != nil {
			return nil, err
		}
		c.m.Cgroup = p
	}
	for _, n := range slices.Concat(m.InIfaces, m.OutIfaces) {
		name, _ := strings.CutSuffix(n, "*")
		if name == "" && n != "*" || len(name) >= 16 || strings.ContainsAny(name, "*\"\x00 /") {
			return nil, fmt.Errorf("interface %q: want a name of at most 15 characters, optionally ending in *", n)
		}
	}
	return c, nil
}

// admits reports whether the callback wants c's packet. It does not
// allocate.
func (m *matcher) admits(c *Ctx) bool {
	p := c.Parsed()
	if m.protos[p.Proto>>6]&(1<<(p.Proto&63)) == 0 || p.Family == 0 {
		return false
	}
	if (m.ports || m.tcp) && p.L4Off < 0 {
		return false
	}
	if m.ports && !(inRanges(m.m.SPorts, p.SrcPort) && inRanges(m.m.DPorts, p.DstPort)) {
		return false
	}
	if m.tcp && p.TCPFlags&m.m.TCPFlagsMask != m.m.TCPFlags {
		return false
	}
	pk := c.pkt
	if m.states != 0 && pk.CTState != CTUnknown && m.states&(1<<pk.CTState) == 0 {
		return false
	}
	if m.m.First != 0 && pk.CTPackets > m.m.First {
		return false
	}
	if m.src != nil && !m.src.Contains(p.Src) || m.dst != nil && !m.dst.Contains(p.Dst) {
		return false
	}
	if !ifaceIn(m.in, pk.InDev) || !ifaceIn(m.out, pk.OutDev) {
		return false
	}
	return m.m.Cgroup == "" || c.cgroupAdmits(m.m.Cgroup)
}

// inRanges reports whether port is in rs; an empty rs admits every port.
func inRanges(rs []PortRange, port uint16) bool {
	if len(rs) == 0 {
		return true
	}
	for _, r := range rs {
		if r.Lo <= port && port <= r.Hi {
			return true
		}
	}
	return false
}

// ifaceIn reports whether dev is one of names (a trailing * matches a
// prefix); an empty names admits any device, even none.
func ifaceIn(names []string, dev string) bool {
	if len(names) == 0 {
		return true
	}
	for _, n := range names {
		if n == "*" || n == dev && dev != "" {
			return true
		}
		if prefix, ok := strings.CutSuffix(n, "*"); ok && dev != "" && strings.HasPrefix(dev, prefix) {
			return true
		}
	}
	return false
}

// String renders m as `luafw check` prints it: "-" for a callback without
// a match, else its fields as the match table spells them.
func (m *Match) String() string {
	if m.IsZero() {
		return "-"
	}
	var parts []string
	add := func(k, v string) { parts = append(parts, k+"="+v) }
	if len(m.Protos) > 0 {
		add("proto", protoList(m.Protos))
	}
	ranges := func(rs []PortRange) string {
		s := make([]string, len(rs))
		for i, r := range rs {
			s[i] = r.String()
		}
		return strings.Join(s, ",")
	}
	if len(m.SPorts) > 0 {
		add("sport", ranges(m.SPorts))
	}
	if len(m.DPorts) > 0 {
		add("dport", ranges(m.DPorts))
	}
	if m.Src != nil {
		add("src", setText(m.Src))
	}
	if m.Dst != nil {
		add("dst", setText(m.Dst))
	}
	if len(m.CTStates) > 0 {
		s := make([]string, len(m.CTStates))
		for i, st := range m.CTStates {
			s[i] = st.String()
		}
		add("ct_state", strings.Join(s, ","))
	}
	if len(m.InIfaces) > 0 {
		add("iif", strings.Join(m.InIfaces, ","))
	}
	if len(m.OutIfaces) > 0 {
		add("oif", strings.Join(m.OutIfaces, ","))
	}
	if m.TCPFlagsMask != 0 {
		add("tcp_flags", tcpFlagsText(m.TCPFlagsMask, m.TCPFlags))
	}
	if m.First != 0 {
		add("first", strconv.FormatUint(m.First, 10))
	}
	if m.Cgroup != "" {
		add("cgroup", m.Cgroup)
	}
	return strings.Join(parts, " ")
}

func protoList(ps []uint8) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = packet.ProtoName(p)
	}
	return strings.Join(s, ",")
}

// setText shows a small set by its prefixes and a large one by its size.
func setText(s *netset.Set) string {
	if s.Ranges() > 4 {
		return fmt.Sprintf("<%d prefixes>", s.Len())
	}
	ps := s.Prefixes()
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	if len(out) == 0 {
		return "<empty>"
	}
	return strings.Join(out, ",")
}

// ParseTCPFlags parses "syn,!ack": the named flags must be set, those with
// "!" clear. It returns the mask of the named flags and their wanted values.
func ParseTCPFlags(s string) (mask, flags uint8, err error) {
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(strings.ToLower(f))
		name, clear := strings.CutPrefix(f, "!")
		bit, ok := packet.TCPFlagByName(name)
		if !ok {
			return 0, 0, fmt.Errorf("tcp_flags: unknown flag %q (want %s, each optionally prefixed by !)", f, packet.TCPFlagNameList)
		}
		if mask&bit != 0 {
			return 0, 0, fmt.Errorf("tcp_flags: %s named twice", name)
		}
		mask |= bit
		if !clear {
			flags |= bit
		}
	}
	return mask, flags, nil
}

func tcpFlagsText(mask, flags uint8) string {
	var s []string
	for i := range 8 {
		n, bit := packet.TCPFlagName(i), uint8(1)<<i
		switch {
		case mask&bit == 0:
		case flags&bit != 0:
			s = append(s, n)
		default:
			s = append(s, "!"+n)
		}
	}
	return strings.Join(s, ",")
}

// ParsePortRange parses "22" or "1000-2000".
func ParsePortRange(s string) (PortRange, error) {
	lo, hi, isRange := strings.Cut(strings.TrimSpace(s), "-")
	a, err := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	if err != nil {
		return PortRange{}, fmt.Errorf("port %q: want a number 0..65535 or a range like 1000-2000", s)
	}
	b := a
	if isRange {
		if b, err = strconv.ParseUint(strings.TrimSpace(hi), 10, 16); err != nil || b < a {
			return PortRange{}, fmt.Errorf("port range %q: want LOW-HIGH with LOW <= HIGH <= 65535", s)
		}
	}
	return PortRange{uint16(a), uint16(b)}, nil
}

package engine

import (
	"fmt"
	"math"
	"strings"

	"github.com/luafw/luafw/internal/sandbox"

	lua "github.com/luafw/luafw/lua"

	"github.com/luafw/luafw/host/netset"
	"github.com/luafw/luafw/host/packet"
)

// The match table of fw.register (see match.go for what it means).

var matchKeys = "proto, sport, dport, src, dst, ct_state, iif, oif, tcp_flags, first, cgroup"

// parseMatch reads fw.register's match table.
func parseMatch(v lua.LValue) (Match, error) {
	t, ok := v.(*lua.LTable)
	if !ok {
		return Match{}, fmt.Errorf("match must be a table, not %s", v.Type())
	}
	var m Match
	var err error
	t.ForEach(func(k, v lua.LValue) {
		if err != nil {
			return
		}
		key, _ := k.(lua.LString)
		switch key {
		case "proto":
			m.Protos, err = listOf(v, parseProto)
		case "sport":
			m.SPorts, err = listOf(v, parsePort)
		case "dport":
			m.DPorts, err = listOf(v, parsePort)
		case "src":
			m.Src, err = parseAddrs(v)
		case "dst":
			m.Dst, err = parseAddrs(v)
		case "ct_state":
			m.CTStates, err = listOf(v, func(v lua.LValue) (CTState, error) {
				s, ok := v.(lua.LString)
				if !ok || s == "" {
					return 0, fmt.Errorf("want a state name (new, established, related, invalid, untracked), not %s", v.Type())
				}
				return ParseCTState(string(s))
			})
		case "iif":
			m.InIfaces, err = listOf(v, parseName)
		case "oif":
			m.OutIfaces, err = listOf(v, parseName)
		case "tcp_flags":
			s, ok := v.(lua.LString)
			if !ok {
				err = fmt.Errorf("tcp_flags must be a string like \"syn,!ack\", not %s", v.Type())
				return
			}
			m.TCPFlagsMask, m.TCPFlags, err = ParseTCPFlags(string(s))
		case "first":
			n, ok := v.(lua.LNumber)
			if !ok || n < 1 || float64(n) != math.Trunc(float64(n)) || n > 1<<53 {
				err = fmt.Errorf("first must be a positive integer, not %s", v.String())
				return
			}
			m.First = uint64(n)
		case "cgroup":
			m.Cgroup, err = parseCgroup(v) // cgroup.go
		default:
			err = fmt.Errorf("unknown field %q (want %s)", k.String(), matchKeys)
		}
		if err != nil && !strings.HasPrefix(err.Error(), string(key)) {
			err = fmt.Errorf("%s: %w", key, err)
		}
	})
	return m, err
}

// listOf reads one value or a list of them.
func listOf[T any](v lua.LValue, one func(lua.LValue) (T, error)) ([]T, error) {
	t, ok := v.(*lua.LTable)
	if !ok {
		x, err := one(v)
		if err != nil {
			return nil, err
		}
		return []T{x}, nil
	}
	var out []T
	var err error
	sandbox.Contents(t).ForEach(func(_, v lua.LValue) {
		if err != nil {
			return
		}
		var x T
		if x, err = one(v); err == nil {
			out = append(out, x)
		}
	})
	if err == nil && len(out) == 0 {
		err = fmt.Errorf("empty list (leave the field out to admit every packet)")
	}
	return out, err
}

// protoNumbers are the protocol names a match takes.
func protoNumber(name string) (uint8, bool) {
	switch name {
	case "icmpv6", "ipv6-icmp":
		return packet.ProtoICMPv6, true
	}
	for p := 0; p < 256; p++ {
		if packet.ProtoName(uint8(p)) == name {
			return uint8(p), true
		}
	}
	return 0, false
}

func parseProto(v lua.LValue) (uint8, error) {
	switch x := v.(type) {
	case lua.LNumber:
		if x >= 0 && x <= 255 && float64(x) == math.Trunc(float64(x)) {
			return uint8(x), nil
		}
	case lua.LString:
		if p, ok := protoNumber(strings.ToLower(string(x))); ok {
			return p, nil
		}
	}
	return 0, fmt.Errorf("unknown protocol %s (want tcp, udp, icmp, icmpv6, sctp, udplite, ... or a number)", v.String())
}

func parsePort(v lua.LValue) (PortRange, error) {
	switch x := v.(type) {
	case lua.LNumber:
		if x >= 0 && x <= 65535 && float64(x) == math.Trunc(float64(x)) {
			return PortRange{uint16(x), uint16(x)}, nil
		}
		return PortRange{}, fmt.Errorf("port %v: want 0..65535", float64(x))
	case lua.LString:
		return ParsePortRange(string(x))
	}
	return PortRange{}, fmt.Errorf("want a port, a range like \"1000-2000\" or a list of them, not %s", v.Type())
}

func parseName(v lua.LValue) (string, error) {
	s, ok := v.(lua.LString)
	if !ok {
		return "", fmt.Errorf("want an interface name, not %s", v.Type())
	}
	return string(s), nil
}

// parseAddrs reads a CIDR, a list of CIDRs or a net set.
func parseAddrs(v lua.LValue) (*netset.Set, error) {
	if ud, ok := v.(*lua.LUserData); ok {
		if s, ok := ud.Value.(*netset.Set); ok {
			return s, nil
		}
		return nil, fmt.Errorf("want a CIDR, a list of them or a net.set, not this userdata")
	}
	entries, err := listOf(v, func(v lua.LValue) (string, error) {
		s, ok := v.(lua.LString)
		if !ok {
			return "", fmt.Errorf("want a CIDR string, not %s", v.Type())
		}
		return string(s), nil
	})
	if err != nil {
		return nil, err
	}
	return netset.Parse(entries)
}

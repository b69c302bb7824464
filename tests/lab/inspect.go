package lab

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/ti-mo/conntrack"
)

// IptablesCounter returns the packet and byte counters of the one rule in
// table/chain whose `iptables-save` text contains ruleSubstring, read inside
// the namespace with the lab's iptables variant (Options.Iptables). Match
// the normalized form iptables-save prints, e.g. "-p udp -m udp --dport 9".
// An empty ruleSubstring returns the chain's policy counters (iptables-nft
// keeps none: always 0 there). No match, or more than one, is an error.
func (n *NS) IptablesCounter(ctx context.Context, table, chain, ruleSubstring string) (packets, bytes uint64, err error) {
	return n.xtCounter(ctx, n.lab.opts.Iptables+"-save", table, chain, ruleSubstring)
}

// Ip6tablesCounter is IptablesCounter for ip6tables.
func (n *NS) Ip6tablesCounter(ctx context.Context, table, chain, ruleSubstring string) (packets, bytes uint64, err error) {
	return n.xtCounter(ctx, "ip6"+strings.TrimPrefix(n.lab.opts.Iptables, "ip")+"-save", table, chain, ruleSubstring)
}

func (n *NS) xtCounter(ctx context.Context, save, table, chain, sub string) (uint64, uint64, error) {
	out, err := n.Run(ctx, save, "-c", "-t", table)
	if err != nil {
		return 0, 0, err
	}
	p, b, err := parseSaveCounter(out, chain, sub)
	if err != nil {
		return 0, 0, fmt.Errorf("lab: [%s] %s -t %s: %w", n.Name, save, table, err)
	}
	return p, b, nil
}

var saveCountRE = regexp.MustCompile(`\[(\d+):(\d+)\]`)

// parseSaveCounter finds one rule (or, with sub empty, the policy line) of
// chain in `iptables-save -c` output.
func parseSaveCounter(out, chain, sub string) (uint64, uint64, error) {
	var found []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		var ok bool
		if sub == "" {
			ok = strings.HasPrefix(line, ":"+chain+" ")
		} else if i := strings.Index(line, "] -A "+chain+" "); strings.HasPrefix(line, "[") && i > 0 {
			ok = strings.Contains(line[i+2:], sub)
		}
		if ok {
			found = append(found, line)
		}
	}
	what := fmt.Sprintf("rule containing %q in chain %s", sub, chain)
	if sub == "" {
		what = "policy of chain " + chain
	}
	switch len(found) {
	case 0:
		return 0, 0, fmt.Errorf("no %s", what)
	case 1:
	default:
		return 0, 0, fmt.Errorf("%d lines match %s (be more specific): %q", len(found), what, found)
	}
	m := saveCountRE.FindStringSubmatch(found[0])
	if m == nil {
		return 0, 0, fmt.Errorf("no counters in %q", found[0])
	}
	p, err1 := strconv.ParseUint(m[1], 10, 64)
	b, err2 := strconv.ParseUint(m[2], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("bad counters in %q", found[0])
	}
	return p, b, nil
}

var nftCountRE = regexp.MustCompile(`counter packets (\d+) bytes (\d+)`)

// NftCounter returns the counters of the one rule with a `counter`
// statement in nftables chain family/table/chain (family "ip", "ip6",
// "inet", ...) whose `nft list chain` text contains ruleSubstring.
func (n *NS) NftCounter(ctx context.Context, family, table, chain, ruleSubstring string) (packets, bytes uint64, err error) {
	out, err := n.Run(ctx, "nft", "list", "chain", family, table, chain)
	if err != nil {
		return 0, 0, err
	}
	var found []string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if nftCountRE.MatchString(line) && strings.Contains(line, ruleSubstring) {
			found = append(found, line)
		}
	}
	if len(found) != 1 {
		return 0, 0, fmt.Errorf("lab: [%s] nft chain %s %s %s: %d counted rules contain %q, want 1: %q",
			n.Name, family, table, chain, len(found), ruleSubstring, found)
	}
	m := nftCountRE.FindStringSubmatch(found[0])
	packets, _ = strconv.ParseUint(m[1], 10, 64)
	bytes, _ = strconv.ParseUint(m[2], 10, 64)
	return packets, bytes, nil
}

// CTEntry is one conntrack entry.
type CTEntry struct {
	// Proto is the IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6).
	Proto uint8
	// Src, Dst, SPort, DPort are the original direction's tuple; Reply* the
	// reply direction's (they differ from the swapped original under NAT).
	Src, Dst               netip.Addr
	SPort, DPort           uint16
	ReplySrc, ReplyDst     netip.Addr
	ReplySPort, ReplyDPort uint16
	// State is the TCP state ("SYN_SENT", "ESTABLISHED", "TIME_WAIT", ...),
	// empty for other protocols.
	State string
	// Status is the entry's IPS_* status bits (see conntrack.StatusFlag).
	Status uint32
	// Mark is the conntrack mark, Labels the connlabel bitmap (nil if none).
	Mark   uint32
	Labels []byte
	// Timeout is the remaining lifetime in seconds.
	Timeout uint32
	Zone    uint16
}

// Assured tells whether the entry has seen traffic both ways (IPS_ASSURED).
func (e CTEntry) Assured() bool { return e.Status&uint32(conntrack.StatusAssured) != 0 }

func (e CTEntry) String() string {
	s := fmt.Sprintf("proto %d %s -> %s", e.Proto, netip.AddrPortFrom(e.Src, e.SPort), netip.AddrPortFrom(e.Dst, e.DPort))
	if e.State != "" {
		s += " " + e.State
	}
	return s + fmt.Sprintf(" mark %#x", e.Mark)
}

// tcpStates are the kernel's TCP_CONNTRACK_* names.
var tcpStates = [...]string{"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"}

// Conntrack dumps the namespace's conntrack table (IPv4 and IPv6) through
// ctnetlink. Conntrack only tracks flows once some rule in the namespace
// needs it (a state, connmark or ct match, NAT).
func (n *NS) Conntrack(ctx context.Context) ([]CTEntry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var flows []conntrack.Flow
	err := n.Do(func() error {
		c, err := conntrack.Dial(nil)
		if err != nil {
			return fmt.Errorf("ctnetlink: %w", err)
		}
		defer c.Close()
		flows, err = c.Dump(nil)
		if err != nil {
			return fmt.Errorf("conntrack dump: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("lab: [%s] %w", n.Name, err)
	}
	out := make([]CTEntry, 0, len(flows))
	for _, f := range flows {
		e := CTEntry{
			Proto:      f.TupleOrig.Proto.Protocol,
			Src:        f.TupleOrig.IP.SourceAddress,
			Dst:        f.TupleOrig.IP.DestinationAddress,
			SPort:      f.TupleOrig.Proto.SourcePort,
			DPort:      f.TupleOrig.Proto.DestinationPort,
			ReplySrc:   f.TupleReply.IP.SourceAddress,
			ReplyDst:   f.TupleReply.IP.DestinationAddress,
			ReplySPort: f.TupleReply.Proto.SourcePort,
			ReplyDPort: f.TupleReply.Proto.DestinationPort,
			Status:     uint32(f.Status.Value),
			Mark:       f.Mark,
			Labels:     f.Labels,
			Timeout:    f.Timeout,
			Zone:       f.TupleOrig.Zone,
		}
		if t := f.ProtoInfo.TCP; t != nil {
			e.State = fmt.Sprintf("STATE_%d", t.State)
			if int(t.State) < len(tcpStates) {
				e.State = tcpStates[t.State]
			}
		}
		out = append(out, e)
	}
	return out, nil
}

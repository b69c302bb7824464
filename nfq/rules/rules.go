package rules

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/luafw/luafw/netfilter"
)

// Defaults for Set.
const (
	DefaultTable      = "luafw"
	DefaultSkipMark   = 0x80000000
	DefaultRejectMark = 0x40000000
	DefaultInjectMark = 0x20000000
	// TailPriority is the priority of the per-hook chains that clear the
	// SkipMark and RejectMark bits: after srcnat (100) and every usual stage,
	// before conntrack confirm (math.MaxInt32). Diversions must sit below it.
	TailPriority = math.MaxInt32 - 1
)

// Filter selects the packets a diversion sends to its queues. Empty fields
// match anything; a packet must match every non-empty field (and any one
// value within a field).
type Filter struct {
	// Protos are IP protocol numbers (meta l4proto: the upper-layer protocol,
	// after IPv6 extension headers). 1 (ICMP) applies to IPv4 only, 58
	// (ICMPv6) to IPv6 only.
	Protos []uint8
	// DPorts, SPorts are transport ports; with them only protocols that have
	// ports match (tcp, udp, dccp, sctp, udplite; Protos must be among them).
	DPorts, SPorts []uint16
	// InIfaces, OutIfaces are interface names; a trailing "*" matches a
	// prefix ("veth*"). The input interface is unknown in output and
	// postrouting, the output interface in prerouting and input.
	InIfaces, OutIfaces []string
	// Src, Dst are address prefixes, either family. A diversion whose Src
	// (or Dst) has no prefix of a family is left out of that family's table.
	Src, Dst []netip.Prefix
}

// QueueSet is a range of NFQUEUE numbers: First..First+Count-1. With Count
// above 1 the kernel balances flows over the range (a hash of addresses and
// protocol). Packets bypass the queue (are accepted) while no reader is
// bound to it, unless the Set is FailClosed.
type QueueSet struct {
	First uint16
	Count uint16
}

// Diversion sends the packets of one hook, at one priority, to queues. It
// becomes one nftables base chain per family.
type Diversion struct {
	Hook     netfilter.Hook
	Priority int32 // base chain priority (a segment's first priority + 1)
	Filter   Filter
	// ByState picks the queue set by conntrack state with native `ct state`
	// matches (which also turns conntrack on in the namespace). Queues is then
	// indexed like netfilter.CTStates() (Queues[s-netfilter.CTNew] serves
	// state s), and a QueueSet with Count 0 leaves
	// packets in that state undiverted. Without ByState only Queues[0] is
	// used and its Count must be at least 1.
	ByState bool
	Queues  [netfilter.NumCTStates]QueueSet
	// Matches, when not empty, narrow the diversion to the packets that
	// pass the Filter and at least one Match (see Match); empty diverts
	// everything the Filter passes.
	Matches []Match
}

// Set is everything luafw installs: tables "ip <Table>" and "ip6 <Table>"
// with one base chain per diversion and one tail chain per hook used.
// Nothing outside these tables is read or changed.
type Set struct {
	// Table is the name of our tables; default DefaultTable.
	Table string
	// SkipMark: a packet whose mark has all these bits skips every luafw
	// diversion of the hook (the daemon sets it with an NF_REPEAT verdict:
	// the kernel then re-runs only the diversion chain that queued the
	// packet, which lets it through). The tail chain clears the bits at the
	// end of the hook, so the next hook diverts the packet again. Default
	// DefaultSkipMark.
	SkipMark uint32
	// RejectMark: a packet whose mark has SkipMark|RejectMark is rejected by
	// the diversion chain: TCP with a reset, others with ICMP (ICMPv6) port
	// unreachable. In postrouting, where the kernel cannot reject, it is
	// dropped. Default DefaultRejectMark.
	RejectMark uint32
	// InjectMark, when nonzero: packets whose mark has all these bits are
	// never diverted, in any hook (the tail does not clear them). luafw
	// sends the packets its scripts inject with it, so they cannot loop
	// back into the queues. The daemon uses DefaultInjectMark.
	InjectMark uint32
	// Diversions, each a base chain. Their order only names the chains.
	Diversions []Diversion
	// ConnMarkOffload, when nonzero: packets whose conntrack mark has all
	// these bits are not diverted (settled flows stay in the kernel).
	ConnMarkOffload uint32
	// ConnMarkDrop, when nonzero: packets whose conntrack mark has all
	// these bits are dropped instead of diverted (a flow a plugin blocked
	// stays blocked in the kernel). It is checked before ConnMarkOffload.
	ConnMarkDrop uint32
	// CTLabels reserves conntrack label storage in the namespace (with a
	// `ct label set` rule that never runs), which Conntrack.Update needs to
	// set labels. Only connections created after Install get the storage.
	CTLabels bool
	// Families are 4 and/or 6; default both.
	Families []int
	// FailClosed leaves the bypass flag off the queue rules: while no
	// reader is bound to a queue (the daemon crashed or was killed), the
	// kernel drops the packets diverted to it instead of accepting them.
	FailClosed bool
}

// DiversionCounter is how many packets one queue rule sent to its queues.
type DiversionCounter struct {
	Family    int               // 4 or 6
	Diversion int               // index into Set.Diversions
	State     netfilter.CTState // the rule's state; netfilter.CTUnknown without ByState
	Packets   uint64
	Bytes     uint64
}

// Install replaces our tables in the current network namespace with the
// ones rs describes, in one atomic nftables transaction: stale tables of
// both families from an earlier run are deleted and the new ones created, or
// nothing changes.
// A caller in another namespace must run it on a locked OS thread inside it.
func Install(ctx context.Context, rs Set) error {
	prog, err := rs.build()
	if err != nil {
		return fmt.Errorf("nfq/rules: install rules: %w", err)
	}
	c, err := nftConn(ctx)
	if err != nil {
		return fmt.Errorf("nfq/rules: install rules: %w", err)
	}
	deleteTables(c, prog.name)
	if err := prog.add(c); err != nil {
		return fmt.Errorf("nfq/rules: install rules: %w", err)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nfq/rules: install rules (table %s): %w", prog.name, err)
	}
	return nil
}

// Remove deletes our tables ("ip <table>" and "ip6 <table>") from the current
// network namespace in one transaction. Absent tables are not an error.
func Remove(ctx context.Context, table string) error {
	table = tableName(table)
	if err := checkTable(table); err != nil {
		return fmt.Errorf("nfq/rules: remove rules: %w", err)
	}
	c, err := nftConn(ctx)
	if err != nil {
		return fmt.Errorf("nfq/rules: remove rules: %w", err)
	}
	deleteTables(c, table)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nfq/rules: remove rules (table %s): %w", table, err)
	}
	return nil
}

// deleteTables queues the deletion of both families' tables named
// table. Adding an existing table is a no-op, so add-then-delete removes a
// table without failing when there is none.
func deleteTables(c *nftables.Conn, table string) {
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6} {
		t := &nftables.Table{Name: table, Family: fam}
		c.AddTable(t)
		c.DelTable(t)
	}
}

// Installed tells whether "ip <table>" or "ip6 <table>" exists in the
// current network namespace.
func Installed(ctx context.Context, table string) (bool, error) {
	table = tableName(table)
	c, err := nftConn(ctx)
	if err != nil {
		return false, fmt.Errorf("nfq/rules: list tables: %w", err)
	}
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6} {
		tables, err := c.ListTablesOfFamily(fam)
		if err != nil {
			return false, fmt.Errorf("nfq/rules: list tables: %w", err)
		}
		for _, t := range tables {
			if t.Name == table {
				return true, nil
			}
		}
	}
	return false, nil
}

// DiversionCounters reads the packet counters of our queue rules in the
// current network namespace (absent tables give no counters).
func DiversionCounters(ctx context.Context, table string) ([]DiversionCounter, error) {
	table = tableName(table)
	c, err := nftConn(ctx)
	if err != nil {
		return nil, fmt.Errorf("nfq/rules: read counters: %w", err)
	}
	var out []DiversionCounter
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6} {
		chains, err := c.ListChainsOfTableFamily(fam)
		if err != nil {
			return nil, fmt.Errorf("nfq/rules: read counters: list chains: %w", err)
		}
		for _, ch := range chains {
			if ch.Table.Name != table {
				continue
			}
			rules, err := c.GetRules(ch.Table, ch)
			if err != nil {
				return nil, fmt.Errorf("nfq/rules: read counters: chain %s: %w", ch.Name, err)
			}
			for _, r := range rules {
				comment, _ := userdata.GetString(r.UserData, userdata.TypeComment)
				div, state, ok := parseCounterComment(comment)
				if !ok {
					continue
				}
				dc := DiversionCounter{Family: 4, Diversion: div, State: state}
				if fam == nftables.TableFamilyIPv6 {
					dc.Family = 6
				}
				for _, e := range r.Exprs {
					if cnt, ok := e.(*expr.Counter); ok {
						dc.Packets, dc.Bytes = cnt.Packets, cnt.Bytes
					}
				}
				out = append(out, dc)
			}
		}
	}
	slices.SortFunc(out, func(a, b DiversionCounter) int {
		if a.Family != b.Family {
			return a.Family - b.Family
		}
		if a.Diversion != b.Diversion {
			return a.Diversion - b.Diversion
		}
		return int(a.State) - int(b.State)
	})
	return out, nil
}

// String renders everything Install would create as nft-like text (for
// `luafw run --dry-run`). An invalid rule set renders as a comment with the
// error.
func (rs Set) String() string {
	prog, err := rs.build()
	if err != nil {
		return "# invalid rule set: " + err.Error() + "\n"
	}
	var b strings.Builder
	for i, tb := range prog.tables {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "table %s %s {\n", tb.famName, prog.name)
		for j, ch := range tb.chains {
			if j > 0 {
				b.WriteString("\n")
			}
			fmt.Fprintf(&b, "\tchain %s {\n", ch.name)
			if ch.base {
				fmt.Fprintf(&b, "\t\ttype filter hook %s priority %d; policy accept;\n", ch.hook, ch.prio)
			}
			for _, r := range ch.rules {
				b.WriteString("\t\t" + strings.Join(r.text, " "))
				if r.comment != "" {
					fmt.Fprintf(&b, " comment %q", r.comment)
				}
				b.WriteString("\n")
			}
			b.WriteString("\t}\n")
		}
		b.WriteString("}\n")
	}
	return b.String()
}

// nftConn opens an nftables connection in the current namespace whose socket
// honours ctx's deadline.
func nftConn(ctx context.Context, extra ...nftables.ConnOption) (*nftables.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Every message of a transaction is acknowledged; without CAP_ACK an
	// ack carries the whole request back (sets with their elements). The
	// replies still arrive all at once after the batch, and a large rule
	// set (many matches, inject rules) overran the default receive buffer
	// (ENOBUFS): ask for room for a few thousand rules.
	opts := append(extra, nftables.WithSockOptions(func(c *netlink.Conn) error {
		if err := c.SetOption(netlink.CapAcknowledge, true); err != nil {
			return err
		}
		return setRuleReadBuffer(c)
	}))
	if dl, ok := ctx.Deadline(); ok {
		opts = append(opts, nftables.WithSockOptions(func(c *netlink.Conn) error {
			return c.SetDeadline(dl)
		}))
	} else {
		opts = append(opts, nftables.WithSockOptions(func(c *netlink.Conn) error {
			return c.SetDeadline(time.Now().Add(netlinkTimeout))
		}))
	}
	return nftables.New(opts...)
}

// netlinkTimeout bounds one nftables exchange when ctx has no deadline.
const netlinkTimeout = 10 * time.Second

// readBuffer is the receive buffer asked for nftables transactions.
const readBuffer = 4 << 20

// setRuleReadBuffer sets it, past net.core.rmem_max where we may
// (SO_RCVBUFFORCE, root), else as far as rmem_max allows; best effort.
func setRuleReadBuffer(c *netlink.Conn) error {
	forced := false
	if rc, err := c.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			forced = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, readBuffer) == nil
		})
	}
	if !forced {
		_ = c.SetReadBuffer(readBuffer)
	}
	return nil
}

// CheckTableName refuses a name nftables would refuse for our tables (""
// stands for DefaultTable), so a configuration can be checked before any
// rule is installed.
func CheckTableName(name string) error { return checkTable(tableName(name)) }

func tableName(t string) string {
	if t == "" {
		return DefaultTable
	}
	return t
}

var tableRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,31}$`)

func checkTable(t string) error {
	if !tableRE.MatchString(t) {
		return fmt.Errorf("table name %q: want a letter then up to 31 letters, digits, '_' or '-'", t)
	}
	return nil
}

// counterComment names a queue rule so DiversionCounters can find it.
func counterComment(div int, state netfilter.CTState) string {
	if state == netfilter.CTUnknown {
		return "luafw div " + strconv.Itoa(div)
	}
	return "luafw div " + strconv.Itoa(div) + " " + state.String()
}

func parseCounterComment(c string) (div int, state netfilter.CTState, ok bool) {
	rest, found := strings.CutPrefix(c, "luafw div ")
	if !found {
		return 0, 0, false
	}
	num, st, hasState := strings.Cut(rest, " ")
	div, err := strconv.Atoi(num)
	if err != nil {
		return 0, 0, false
	}
	if !hasState {
		return div, netfilter.CTUnknown, true
	}
	state, err = netfilter.ParseCTState(st)
	return div, state, err == nil && state != netfilter.CTUnknown
}

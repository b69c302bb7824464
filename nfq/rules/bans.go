package rules

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/luafw/luafw/netfilter"
)

// BanPriority is the priority of the bans chain in prerouting: the lowest
// there is, so a banned source's packets are dropped before defragmentation,
// conntrack and any diversion to a queue. (A diversion chain at this same
// priority runs after it: the kernel orders equal priorities by
// registration, and the bans chain is registered first and never again.)
const BanPriority = netfilter.PriorityFirst

// banChain is the one chain of the bans table.
const banChain = "bans"

// banBatch is the most elements one transaction carries: a transaction
// goes to the kernel in one sendmsg, which must fit the socket's send
// buffer (about 200 KiB by default); 2,048 IPv6 elements with timeouts
// take about 100 KiB.
const banBatch = 2048

// BanElem is one ban: a source address or prefix, and how long the kernel
// keeps it (0: until deleted).
type BanElem struct {
	Prefix  netip.Prefix
	Timeout time.Duration
}

// BanTable keeps the bans table in the calling thread's network namespace:
// "inet <Table>" (the diversion tables' name, in another family) with one
// base chain, "bans", in prerouting at BanPriority, and for each ban set S
// four nftables sets with timeouts, S_v4 and S_v6 (addresses) and S_v4net
// and S_v6net (prefixes, intervals), and one rule per set that counts and
// drops a packet whose source address is in it, unless it arrived over
// loopback (the node's packets to itself).
//
// Install creates the table on first use and later adds and removes sets
// without unregistering the chain's hook (which would drop every packet
// queued in the namespace). Update and Replace change one set's elements;
// Remove deletes the table. A BanTable is not safe for concurrent use.
type BanTable struct {
	name string
	sets []string // installed, sorted
}

var banSetRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,63}$`)

// banSets are the four kernel sets of ban set name.
func banSets(t *nftables.Table, name string) [4]*nftables.Set {
	return [4]*nftables.Set{
		{Table: t, Name: name + "_v4", KeyType: nftables.TypeIPAddr, HasTimeout: true},
		{Table: t, Name: name + "_v6", KeyType: nftables.TypeIP6Addr, HasTimeout: true},
		{Table: t, Name: name + "_v4net", KeyType: nftables.TypeIPAddr, HasTimeout: true, Interval: true},
		{Table: t, Name: name + "_v6net", KeyType: nftables.TypeIP6Addr, HasTimeout: true, Interval: true},
	}
}

// banRule is "meta nfproto ipvX meta iiftype != loopback ip(6) saddr
// @set counter drop": the node's packets to itself (over lo) are never
// dropped, whatever a map holds.
func banRule(t *nftables.Table, ch *nftables.Chain, s *nftables.Set, v6 bool) *nftables.Rule {
	proto, off, n := byte(unix.NFPROTO_IPV4), uint32(12), uint32(4)
	if v6 {
		proto, off, n = unix.NFPROTO_IPV6, 8, 16
	}
	loopback := binary.NativeEndian.AppendUint16(nil, unix.ARPHRD_LOOPBACK)
	return &nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: nftReg},
		&expr.Cmp{Op: expr.CmpOpEq, Register: nftReg, Data: []byte{proto}},
		&expr.Meta{Key: expr.MetaKeyIIFTYPE, Register: nftReg},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: nftReg, Data: loopback},
		&expr.Payload{DestRegister: nftReg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Lookup{SourceRegister: nftReg, SetName: s.Name, SetID: s.ID},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}}
}

func (b *BanTable) objects() (*nftables.Table, *nftables.Chain) {
	t := &nftables.Table{Name: b.name, Family: nftables.TableFamilyINet}
	prio := nftables.ChainPriority(BanPriority)
	policy := nftables.ChainPolicyAccept
	return t, &nftables.Chain{Name: banChain, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: &prio, Policy: &policy}
}

// Install makes the table hold exactly the ban sets named (each a letter
// then up to 63 letters, digits or '_'), in one transaction. The first
// Install replaces a table of the same name left by an earlier run; later
// ones keep the chain and the elements of sets that stay, and delete the
// sets no longer named.
func (b *BanTable) Install(ctx context.Context, table string, sets []string) error {
	table = tableName(table)
	if err := checkTable(table); err != nil {
		return fmt.Errorf("nfq/rules: install bans: %w", err)
	}
	sets = slices.Compact(slices.Sorted(slices.Values(sets)))
	for _, s := range sets {
		if !banSetRE.MatchString(s) {
			return fmt.Errorf("nfq/rules: install bans: set name %q: want a letter then up to 63 letters, digits or '_'", s)
		}
	}
	if b.name == table && slices.Equal(b.sets, sets) || b.name == "" && len(sets) == 0 {
		return nil // (no table until a set is needed)
	}
	c, err := nftConn(ctx)
	if err != nil {
		return fmt.Errorf("nfq/rules: install bans: %w", err)
	}
	fresh := b.name != table
	if fresh {
		if b.name != "" {
			delBanTable(c, b.name)
		}
		delBanTable(c, table)
	}
	b2 := BanTable{name: table}
	t, ch := b2.objects()
	if fresh {
		c.AddTable(t)
		c.AddChain(ch)
	} else {
		c.FlushChain(ch)
		for _, s := range b.sets {
			if !slices.Contains(sets, s) {
				for _, set := range banSets(t, s) {
					c.DelSet(set)
				}
			}
		}
	}
	for _, s := range sets {
		kset := banSets(t, s)
		if fresh || !slices.Contains(b.sets, s) {
			for _, set := range kset {
				if err := c.AddSet(set, nil); err != nil {
					return fmt.Errorf("nfq/rules: install bans: set %s: %w", set.Name, err)
				}
			}
		}
		for i, set := range kset {
			c.AddRule(banRule(t, ch, set, i%2 == 1))
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nfq/rules: install bans (table inet %s): %w", table, err)
	}
	b.name, b.sets = table, sets
	return nil
}

// Check reinstalls the table, empty, if it was installed and someone
// else deleted it or one of its sets or its chain since (`nft flush
// ruleset`); it reports whether it did, so that the caller refills the
// sets.
func (b *BanTable) Check(ctx context.Context) (bool, error) {
	if b.name == "" {
		return false, nil
	}
	c, err := nftConn(ctx)
	if err != nil {
		return false, fmt.Errorf("nfq/rules: check bans: %w", err)
	}
	t, ch := b.objects()
	sets, err := c.GetSets(t)
	if err == nil {
		have := map[string]bool{}
		for _, s := range sets {
			have[s.Name] = true
		}
		ok := true
		for _, name := range b.sets {
			for _, s := range banSets(t, name) {
				ok = ok && have[s.Name]
			}
		}
		var rules []*nftables.Rule
		if rules, err = c.GetRules(t, ch); err == nil && ok && len(rules) == 4*len(b.sets) {
			return false, nil
		}
	}
	name, sets2 := b.name, b.sets
	b.name, b.sets = "", nil
	if err := b.Install(ctx, name, sets2); err != nil {
		return false, err
	}
	return true, nil
}

// delBanTable queues the deletion of "inet <table>", absent or not.
func delBanTable(c *nftables.Conn, table string) {
	t := &nftables.Table{Name: table, Family: nftables.TableFamilyINet}
	c.AddTable(t)
	c.DelTable(t)
}

// Remove deletes the table.
func (b *BanTable) Remove(ctx context.Context) error {
	name := b.name
	b.name, b.sets = "", nil
	if name == "" {
		return nil
	}
	return RemoveBans(ctx, name)
}

// RemoveBans deletes the bans table "inet <table>" (absent: not an error),
// as one left by an earlier run.
func RemoveBans(ctx context.Context, name string) error {
	name = tableName(name)
	if err := checkTable(name); err != nil {
		return fmt.Errorf("nfq/rules: remove bans: %w", err)
	}
	c, err := nftConn(ctx)
	if err != nil {
		return fmt.Errorf("nfq/rules: remove bans: %w", err)
	}
	delBanTable(c, name)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nfq/rules: remove bans (table inet %s): %w", name, err)
	}
	return nil
}

// ErrNoBanSet is returned for a set that Install did not create.
var ErrNoBanSet = errors.New("no such ban set")

// Update adds (or, for an element present, refreshes the timeout of:
// kernels since 6.10 do) and deletes elements of ban set name, in
// transactions of up to 2,048 elements. Deleting an element the kernel
// does not hold (it expired there) fails its transaction; Replace then
// puts the set right.
func (b *BanTable) Update(ctx context.Context, name string, add []BanElem, del []netip.Prefix) error {
	if !slices.Contains(b.sets, name) {
		return fmt.Errorf("nfq/rules: update bans: %q: %w", name, ErrNoBanSet)
	}
	t, _ := b.objects()
	kset := banSets(t, name)
	var ops []banOp
	for _, p := range del {
		ops = append(ops, banOp{del: true, elem: BanElem{Prefix: p}})
	}
	for _, e := range add {
		ops = append(ops, banOp{elem: e})
	}
	return b.send(ctx, kset, ops, false)
}

// Replace makes ban set name hold exactly all.
func (b *BanTable) Replace(ctx context.Context, name string, all []BanElem) error {
	if !slices.Contains(b.sets, name) {
		return fmt.Errorf("nfq/rules: replace bans: %q: %w", name, ErrNoBanSet)
	}
	t, _ := b.objects()
	ops := make([]banOp, len(all))
	for i, e := range all {
		ops[i] = banOp{elem: e}
	}
	return b.send(ctx, banSets(t, name), ops, true)
}

type banOp struct {
	del  bool
	elem BanElem
}

// send sends ops in transactions of up to banBatch elements, the first
// one flushing the four sets first when flush.
func (b *BanTable) send(ctx context.Context, kset [4]*nftables.Set, ops []banOp, flush bool) error {
	for first := true; first || len(ops) > 0; first = false {
		n := min(len(ops), banBatch)
		chunk := ops[:n]
		ops = ops[n:]
		c, err := nftConn(ctx)
		if err != nil {
			return fmt.Errorf("nfq/rules: update bans: %w", err)
		}
		if flush && first {
			for _, s := range kset {
				c.FlushSet(s)
			}
		}
		var adds, dels [4][]nftables.SetElement
		for _, op := range chunk {
			i, elems := banElems(op.elem)
			if op.del {
				dels[i] = append(dels[i], elems...)
			} else {
				adds[i] = append(adds[i], elems...)
			}
		}
		for i, s := range kset {
			if len(dels[i]) > 0 {
				if err := c.SetDeleteElements(s, dels[i]); err != nil {
					return fmt.Errorf("nfq/rules: update bans: %w", err)
				}
			}
			if len(adds[i]) > 0 {
				if err := c.SetAddElements(s, adds[i]); err != nil {
					return fmt.Errorf("nfq/rules: update bans: %w", err)
				}
			}
		}
		if err := c.Flush(); err != nil {
			return fmt.Errorf("nfq/rules: update bans (table inet %s set %s): %w", b.name, kset[0].Name[:len(kset[0].Name)-3], err)
		}
	}
	return nil
}

// banElems returns which of a ban set's four kernel sets holds e and its
// elements there: one for an address, a start and an end for a prefix.
func banElems(e BanElem) (int, []nftables.SetElement) {
	p := e.Prefix.Masked()
	i := 0
	if p.Addr().Is6() {
		i = 1
	}
	if p.IsSingleIP() {
		return i, []nftables.SetElement{{Key: p.Addr().AsSlice(), Timeout: e.Timeout}}
	}
	start := nftables.SetElement{Key: p.Addr().AsSlice(), Timeout: e.Timeout}
	if end := increment(lastAddr(p)); end != nil {
		return i + 2, []nftables.SetElement{start, {Key: end, IntervalEnd: true}}
	}
	return i + 2, []nftables.SetElement{start}
}

// BanSetCounts reads how many addresses and prefixes ban set name of
// table holds in the kernel (expired elements not yet collected are left
// out), for tests and measurements.
func BanSetCounts(ctx context.Context, table, name string) (addrs, prefixes int, err error) {
	c, err := nftConn(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("nfq/rules: read bans: %w", err)
	}
	t := &nftables.Table{Name: tableName(table), Family: nftables.TableFamilyINet}
	for i, s := range banSets(t, name) {
		elems, err := c.GetSetElements(s)
		if err != nil {
			return 0, 0, fmt.Errorf("nfq/rules: read bans: set %s: %w", s.Name, err)
		}
		for _, e := range elems {
			if e.IntervalEnd {
				continue
			}
			if i < 2 {
				addrs++
			} else {
				prefixes++
			}
		}
	}
	return addrs, prefixes, nil
}

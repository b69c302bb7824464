package rules

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/luafw/luafw/netfilter"
)

// The rule set is first built into this small program, from which Install
// emits netlink messages and String emits text, so both always agree.

type nftProgram struct {
	name   string
	tables []*nftTableIR
}

type nftTableIR struct {
	family  nftables.TableFamily
	famName string // "ip" or "ip6"
	chains  []*nftChainIR
}

type nftChainIR struct {
	name    string
	base    bool
	hook    string
	hooknum nftables.ChainHook
	prio    int32
	rules   []*nftRuleIR
}

type nftRuleIR struct {
	exprs   []expr.Any
	sets    []*nftSetIR
	text    []string
	comment string
}

// nftSetIR is an anonymous constant set a lookup in its rule refers to.
type nftSetIR struct {
	keyType  nftables.SetDatatype
	interval bool
	elems    []nftables.SetElement
	lookup   *expr.Lookup // filled in with the set's name and id at install
}

func (r *nftRuleIR) add(text string, e ...expr.Any) *nftRuleIR {
	if text != "" {
		r.text = append(r.text, text)
	}
	r.exprs = append(r.exprs, e...)
	return r
}

// NFQUEUE target (xt_NFQ_info_v3) flags.
const (
	nfqFlagBypass = 0x01
	nftReg        = 1 // NFT_REG_1, the 16-byte register every match uses
)

// Protocols with ports at transport header offsets 0 (source) and 2
// (destination).
var portProtos = []uint8{unix.IPPROTO_TCP, unix.IPPROTO_UDP, unix.IPPROTO_DCCP, unix.IPPROTO_SCTP, unix.IPPROTO_UDPLITE}

// HasPorts reports whether IP protocol p has transport ports a Filter's
// DPorts and SPorts can match.
func HasPorts(p uint8) bool { return slices.Contains(portProtos, p) }

var protoNames = map[uint8]string{
	unix.IPPROTO_ICMP: "icmp", unix.IPPROTO_IGMP: "igmp", unix.IPPROTO_TCP: "tcp", unix.IPPROTO_UDP: "udp",
	unix.IPPROTO_DCCP: "dccp", unix.IPPROTO_GRE: "gre", unix.IPPROTO_ESP: "esp", unix.IPPROTO_AH: "ah",
	unix.IPPROTO_ICMPV6: "ipv6-icmp", unix.IPPROTO_SCTP: "sctp", unix.IPPROTO_UDPLITE: "udplite",
}

func protoName(p uint8) string {
	if n, ok := protoNames[p]; ok {
		return n
	}
	return strconv.Itoa(int(p))
}

// withDefaults fills in defaults and validates everything but the filters.
func (rs Set) withDefaults() (Set, error) {
	rs.Table = tableName(rs.Table)
	if err := checkTable(rs.Table); err != nil {
		return rs, err
	}
	if rs.SkipMark == 0 {
		rs.SkipMark = DefaultSkipMark
	}
	if rs.RejectMark == 0 {
		rs.RejectMark = DefaultRejectMark
	}
	if rs.InjectMark&(rs.SkipMark|rs.RejectMark) != 0 {
		return rs, fmt.Errorf("InjectMark %#x shares bits with SkipMark %#x or RejectMark %#x", rs.InjectMark, rs.SkipMark, rs.RejectMark)
	}
	if rs.SkipMark&rs.RejectMark != 0 {
		return rs, fmt.Errorf("SkipMark %#x and RejectMark %#x share bits", rs.SkipMark, rs.RejectMark)
	}
	if len(rs.Families) == 0 {
		rs.Families = []int{4, 6}
	}
	seen := map[int]bool{}
	for _, f := range rs.Families {
		if f != 4 && f != 6 {
			return rs, fmt.Errorf("family %d: want 4 or 6", f)
		}
		if seen[f] {
			return rs, fmt.Errorf("family %d listed twice", f)
		}
		seen[f] = true
	}
	for i, d := range rs.Diversions {
		if int(d.Hook) >= netfilter.NumHooks {
			return rs, fmt.Errorf("diversion %d: %v: not a hook", i, d.Hook)
		}
		if d.Priority >= TailPriority {
			return rs, fmt.Errorf("diversion %d: priority %d: must be below %d (the tail chains)", i, d.Priority, TailPriority)
		}
		for j := range i {
			if o := rs.Diversions[j]; o.Hook == d.Hook && o.Priority == d.Priority {
				return rs, fmt.Errorf("diversions %d and %d: both at %s priority %d", j, i, d.Hook, d.Priority)
			}
		}
		used := 0
		for s, q := range d.Queues {
			if q.Count == 0 {
				continue
			}
			if !d.ByState && s > 0 {
				return rs, fmt.Errorf("diversion %d: Queues[%d] set without ByState (only Queues[0] is used)", i, s)
			}
			if int(q.First)+int(q.Count)-1 > 0xffff {
				return rs, fmt.Errorf("diversion %d: queues %d..%d: beyond 65535", i, q.First, int(q.First)+int(q.Count)-1)
			}
			used++
		}
		if used == 0 {
			return rs, fmt.Errorf("diversion %d: no queues (Queues[0].Count is 0)", i)
		}
		if err := d.Filter.check(); err != nil {
			return rs, fmt.Errorf("diversion %d: %w", i, err)
		}
		for _, m := range d.Matches {
			if err := m.check(); err != nil {
				return rs, fmt.Errorf("diversion %d: %w", i, err)
			}
		}
	}
	return rs, nil
}

func (f Filter) check() error {
	if len(f.DPorts)+len(f.SPorts) > 0 {
		for _, p := range f.Protos {
			if !slices.Contains(portProtos, p) {
				return fmt.Errorf("filter: ports with protocol %s, which has no ports", protoName(p))
			}
		}
	}
	for _, n := range slices.Concat(f.InIfaces, f.OutIfaces) {
		name, _ := strings.CutSuffix(n, "*")
		if name == "" && n != "*" || len(name) >= unix.IFNAMSIZ || strings.ContainsAny(name, "*\"\x00 /") {
			return fmt.Errorf("filter: interface %q: want a name of at most 15 characters, optionally ending in *", n)
		}
	}
	for _, p := range slices.Concat(f.Src, f.Dst) {
		if !p.IsValid() {
			return fmt.Errorf("filter: invalid prefix %v", p)
		}
	}
	v4, v6 := false, false
	for _, fam := range []int{4, 6} {
		if f.familyOK(fam) {
			v4 = v4 || fam == 4
			v6 = v6 || fam == 6
		}
	}
	if !v4 && !v6 {
		return fmt.Errorf("filter: matches no packet of either family")
	}
	return nil
}

// familyOK tells whether the filter can match packets of the family.
func (f Filter) familyOK(fam int) bool {
	has := func(ps []netip.Prefix) bool {
		if len(ps) == 0 {
			return true
		}
		for _, p := range ps {
			if normPrefix(p).Addr().Is4() == (fam == 4) {
				return true
			}
		}
		return false
	}
	if !has(f.Src) || !has(f.Dst) {
		return false
	}
	if len(f.Protos) == 0 {
		return true
	}
	for _, p := range f.Protos {
		if (p != unix.IPPROTO_ICMP || fam == 4) && (p != unix.IPPROTO_ICMPV6 || fam == 6) {
			return true
		}
	}
	return false
}

// build validates rs and turns it into tables, chains and rules.
func (rs Set) build() (*nftProgram, error) {
	rs, err := rs.withDefaults()
	if err != nil {
		return nil, err
	}
	if rs, err = rs.resolveCgroups(); err != nil { // cgroup.go
		return nil, err
	}
	prog := &nftProgram{name: rs.Table}
	fams := slices.Clone(rs.Families)
	slices.Sort(fams)
	for i, d := range rs.Diversions {
		if !slices.ContainsFunc(fams, d.Filter.familyOK) {
			return nil, fmt.Errorf("diversion %d: filter matches no packet of families %v", i, fams)
		}
	}
	for _, fam := range fams {
		tb := &nftTableIR{family: nftables.TableFamilyIPv4, famName: "ip"}
		if fam == 6 {
			tb.family, tb.famName = nftables.TableFamilyIPv6, "ip6"
		}
		// A hook with one diversion has its bits cleared in that chain; a
		// tail base chain (a hook call for every packet) only where later
		// diversions must see them. Counted over both families: the
		// daemon sets the skip bit on a final accept when a later segment
		// exists in either.
		var hooks [netfilter.NumHooks]int // diversions per hook
		var used [netfilter.NumHooks]bool // hooks with a diversion in this family
		for _, d := range rs.Diversions {
			hooks[d.Hook]++
			used[d.Hook] = used[d.Hook] || d.Filter.familyOK(fam)
		}
		for i, d := range rs.Diversions {
			if d.Filter.familyOK(fam) {
				tb.chains = append(tb.chains, rs.diversionChains(fam, i, d, hooks[d.Hook] == 1)...)
			}
		}
		for _, h := range netfilter.Hooks() {
			if !used[h] || hooks[h] < 2 {
				continue
			}
			tb.chains = append(tb.chains, &nftChainIR{
				name: "tail_" + h.String(), base: true, hook: h.String(), hooknum: nftables.ChainHook(h),
				prio: TailPriority, rules: []*nftRuleIR{rs.tailRule()},
			})
		}
		if rs.CTLabels {
			// Never jumped to: its only purpose is that loading a `ct label
			// set` makes the kernel give new connections label storage.
			r := (&nftRuleIR{}).add("ct label set 0",
				&expr.Immediate{Register: nftReg, Data: make([]byte, 16)},
				&expr.Ct{Key: expr.CtKeyLABELS, Register: nftReg, SourceRegister: true})
			tb.chains = append(tb.chains, &nftChainIR{name: "ct_labels", rules: []*nftRuleIR{r}})
		}
		prog.tables = append(prog.tables, tb)
	}
	return prog, nil
}

// diversionChains builds the chains of diversion i for one family (sole:
// the only one of its hook). A
// diversion narrowed by matches or a filter tests those first: a packet
// none of them admits leaves after one mark test and the selector rules,
// and luafw's own checks (its marks, the kernel's reject replies,
// offload) run only for packets it would queue. The mark test comes first
// so a packet marked by a verdict is still rejected or let through when
// it no longer matches (rewritten by the verdict, or the rules reloaded
// while it was queued).
func (rs Set) diversionChains(fam, i int, d Diversion, sole bool) []*nftChainIR {
	base := &nftChainIR{
		name: d.chainName(), base: true, hook: d.Hook.String(),
		hooknum: nftables.ChainHook(d.Hook), prio: d.Priority,
	}
	dispatch := rs.dispatchRules(i, d)
	selectors, narrowed := d.selectors(fam)
	if !narrowed {
		base.rules = slices.Concat(rs.markRules(fam, d, sole), rs.passRules(d), dispatch)
		return []*nftChainIR{base}
	}
	marked := &nftChainIR{name: base.name + "_mark", rules: rs.markRules(fam, d, sole)}
	inner := &nftChainIR{name: base.name + "_q"}
	if d.ByState {
		inner.name = base.name + "_ct"
	}
	inner.rules = slices.Concat(rs.injectRules(), rs.passRules(d), dispatch)
	base.rules = append(base.rules, rs.anyMarkBit().
		add("jump "+marked.name, &expr.Verdict{Kind: expr.VerdictJump, Chain: marked.name}))
	for _, r := range selectors {
		base.rules = append(base.rules, r.add("jump "+inner.name, &expr.Verdict{Kind: expr.VerdictJump, Chain: inner.name}))
	}
	return []*nftChainIR{base, inner, marked}
}

// selectors returns the rules that pick the packets diversion d queues in
// family fam, one per distinct match (or the filter's one), and whether d
// is narrowed at all (without matches and filter it queues everything;
// narrowed with no selector, nothing of this family).
func (d Diversion) selectors(fam int) ([]*nftRuleIR, bool) {
	if len(d.Matches) == 0 {
		f := d.Filter.rule(fam)
		if len(f.exprs) == 0 {
			return nil, false
		}
		return []*nftRuleIR{f}, true
	}
	var out []*nftRuleIR
	seen := map[string]bool{}
	for _, m := range d.Matches {
		if !m.filter().familyOK(fam) {
			continue
		}
		r := d.Filter.rule(fam)
		m.rule(r, fam, d.ByState)
		text := strings.Join(r.text, " ")
		if seen[text] {
			continue
		}
		seen[text] = true
		out = append(out, r)
	}
	return out, true
}

// injectRules let luafw's injected packets pass.
func (rs Set) injectRules() []*nftRuleIR {
	if rs.InjectMark == 0 {
		return nil
	}
	return []*nftRuleIR{markBits(&nftRuleIR{}, rs.InjectMark).add("accept", &expr.Verdict{Kind: expr.VerdictAccept})}
}

// markRules act on the marks luafw's verdicts set: injected packets pass,
// rejected ones are rejected (dropped in postrouting), skipped ones pass.
// In the only diversion of a hook (sole) they also clear the skip and
// reject bits, which a tail chain does in hooks with several.
func (rs Set) markRules(fam int, d Diversion, sole bool) []*nftRuleIR {
	rules := rs.injectRules()
	both := rs.SkipMark | rs.RejectMark
	if d.Hook == netfilter.Postrouting {
		// The kernel refuses reject in postrouting.
		rules = append(rules, markBits(&nftRuleIR{}, both).add("drop", &expr.Verdict{Kind: expr.VerdictDrop}))
	} else {
		r := markBits(&nftRuleIR{}, both)
		matchL4Proto(r, []uint8{unix.IPPROTO_TCP})
		r.add("reject with tcp reset", &expr.Reject{Type: unix.NFT_REJECT_TCP_RST})
		rules = append(rules, r)
		r = markBits(&nftRuleIR{}, both)
		if fam == 4 {
			r.add("reject with icmp type port-unreachable", &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 3})
		} else {
			r.add("reject with icmpv6 type port-unreachable", &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 4})
		}
		rules = append(rules, r)
	}
	skip := markBits(&nftRuleIR{}, rs.SkipMark)
	if !sole {
		return append(rules, skip.add("accept", &expr.Verdict{Kind: expr.VerdictAccept}))
	}
	rs.clearBits(skip).add("accept", &expr.Verdict{Kind: expr.VerdictAccept})
	// A reject bit without the skip bit was not set by luafw's verdicts;
	// cleared all the same, as the tail would.
	return append(rules, skip, rs.clearBits(rs.anyMarkBit()))
}

// anyMarkBit matches packets whose mark has the skip or the reject bit.
func (rs Set) anyMarkBit() *nftRuleIR {
	both := rs.SkipMark | rs.RejectMark
	return (&nftRuleIR{}).add(fmt.Sprintf("meta mark & %s != 0", hex(both)),
		&expr.Meta{Key: expr.MetaKeyMARK, Register: nftReg}, andMask(both),
		&expr.Cmp{Op: expr.CmpOpNeq, Register: nftReg, Data: make([]byte, 4)})
}

// clearBits appends the statement that clears the skip and reject bits.
func (rs Set) clearBits(r *nftRuleIR) *nftRuleIR {
	keep := ^(rs.SkipMark | rs.RejectMark)
	return r.add("meta mark set meta mark & "+hex(keep),
		&expr.Meta{Key: expr.MetaKeyMARK, Register: nftReg},
		andMask(keep),
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: nftReg})
}

// passRules let through, undiverted, what conntrack says must not be
// queued: the kernel's reject replies and offloaded flows.
func (rs Set) passRules(d Diversion) []*nftRuleIR {
	var rules []*nftRuleIR
	// Replies the kernel generates for a rejected packet (a TCP reset, an
	// ICMP error) are attached to that packet's conntrack entry, which was
	// never confirmed and is now shared; NFQUEUE drops such packets when
	// they are queued (nf_ct_drop_unconfirmed). Let them pass undiverted,
	// or luafw's own REJECT replies would die in its output diversion. (A
	// rule set that does not use conntrack must not turn it on, so this
	// rule comes only with conntrack.)
	if d.ByState || rs.ConnMarkOffload != 0 || rs.ConnMarkDrop != 0 || rs.CTLabels {
		rules = append(rules, rs.relatedUnconfirmedAccept())
	}
	if rs.ConnMarkDrop != 0 {
		m := rs.ConnMarkDrop
		r := (&nftRuleIR{}).add(fmt.Sprintf("ct mark & %s == %s", hex(m), hex(m)),
			&expr.Ct{Key: expr.CtKeyMARK, Register: nftReg}, andMask(m),
			&expr.Cmp{Op: expr.CmpOpEq, Register: nftReg, Data: binaryutil.NativeEndian.PutUint32(m)})
		rules = append(rules, r.add("counter", &expr.Counter{}).add("drop", &expr.Verdict{Kind: expr.VerdictDrop}))
	}
	if rs.ConnMarkOffload != 0 {
		m := rs.ConnMarkOffload
		r := (&nftRuleIR{}).add(fmt.Sprintf("ct mark & %s == %s", hex(m), hex(m)),
			&expr.Ct{Key: expr.CtKeyMARK, Register: nftReg}, andMask(m),
			&expr.Cmp{Op: expr.CmpOpEq, Register: nftReg, Data: binaryutil.NativeEndian.PutUint32(m)})
		rules = append(rules, r.add("accept", &expr.Verdict{Kind: expr.VerdictAccept}))
	}
	return rules
}

// dispatchRules queue diversion i's packets: by conntrack state, or to its
// one queue set.
func (rs Set) dispatchRules(i int, d Diversion) []*nftRuleIR {
	if d.ByState {
		return rs.stateRules(i, d)
	}
	r := (&nftRuleIR{}).add("counter", &expr.Counter{})
	queueStmt(r, d.Queues[0], !rs.FailClosed)
	r.comment = counterComment(i, netfilter.CTUnknown)
	return []*nftRuleIR{r}
}

// tailRule clears the skip and reject bits at the end of a hook, so the
// next hook diverts the packet again. It reads the mark first: most
// packets carry neither bit, and are not written to.
func (rs Set) tailRule() *nftRuleIR { return rs.clearBits(rs.anyMarkBit()) }

// stateRules are the rules that queue diversion i's packets by conntrack
// state.
func (rs Set) stateRules(i int, d Diversion) []*nftRuleIR {
	var rules []*nftRuleIR
	for k, s := range netfilter.CTStates() {
		q := d.Queues[k]
		if q.Count == 0 {
			continue
		}
		r := (&nftRuleIR{}).add("ct state "+s.String(),
			&expr.Ct{Key: expr.CtKeySTATE, Register: nftReg}, andMask(stateBit(s)),
			&expr.Cmp{Op: expr.CmpOpNeq, Register: nftReg, Data: make([]byte, 4)})
		r.add("counter", &expr.Counter{})
		queueStmt(r, q, !rs.FailClosed)
		r.comment = counterComment(i, s)
		rules = append(rules, r)
	}
	return rules
}

// chainName names a diversion's base chain by its hook and priority, not
// its index, so a diversion keeps its chain when others come or go on a
// reload (the chain, and the netfilter hook it holds, stay registered).
func (d Diversion) chainName() string {
	p := strconv.Itoa(int(d.Priority))
	if d.Priority < 0 {
		p = "m" + p[1:] // '-' would need quoting in nft's syntax
	}
	return "div_" + d.Hook.String() + "_" + p
}

// rule returns the filter's matches for one family (callers append to it).
func (f Filter) rule(fam int) *nftRuleIR {
	r := &nftRuleIR{}
	protos := f.Protos
	if len(f.DPorts)+len(f.SPorts) > 0 && len(protos) == 0 {
		protos = portProtos
	}
	var famProtos []uint8
	for _, p := range protos {
		if (p == unix.IPPROTO_ICMP && fam == 6) || (p == unix.IPPROTO_ICMPV6 && fam == 4) {
			continue
		}
		famProtos = append(famProtos, p)
	}
	if len(famProtos) > 0 {
		matchL4Proto(r, famProtos)
	}
	matchPorts(r, "sport", 0, f.SPorts)
	matchPorts(r, "dport", 2, f.DPorts)
	matchIfaces(r, "iifname", expr.MetaKeyIIFNAME, f.InIfaces)
	matchIfaces(r, "oifname", expr.MetaKeyOIFNAME, f.OutIfaces)
	matchAddrs(r, fam, "saddr", f.Src)
	matchAddrs(r, fam, "daddr", f.Dst)
	return r
}

// relatedUnconfirmedAccept lets related packets of unconfirmed entries
// (the kernel's reject replies) through.
func (rs Set) relatedUnconfirmedAccept() *nftRuleIR {
	return (&nftRuleIR{}).
		add("ct state related",
			&expr.Ct{Key: expr.CtKeySTATE, Register: nftReg}, andMask(expr.CtStateBitRELATED),
			&expr.Cmp{Op: expr.CmpOpNeq, Register: nftReg, Data: make([]byte, 4)}).
		add("ct status & confirmed == 0",
			&expr.Ct{Key: expr.CtKeySTATUS, Register: nftReg}, andMask(uint32(conntrack.StatusConfirmed)),
			&expr.Cmp{Op: expr.CmpOpEq, Register: nftReg, Data: make([]byte, 4)}).
		add("accept", &expr.Verdict{Kind: expr.VerdictAccept})
}

// stateBit is nftables' `ct state` bit of s (0 for netfilter.CTUnknown).
func stateBit(s netfilter.CTState) uint32 {
	switch s {
	case netfilter.CTNew:
		return expr.CtStateBitNEW
	case netfilter.CTEstablished:
		return expr.CtStateBitESTABLISHED
	case netfilter.CTRelated:
		return expr.CtStateBitRELATED
	case netfilter.CTInvalid:
		return expr.CtStateBitINVALID
	case netfilter.CTUntracked:
		return expr.CtStateBitUNTRACKED
	}
	return 0
}

func hex(v uint32) string { return fmt.Sprintf("0x%08x", v) }

func andMask(m uint32) *expr.Bitwise {
	return &expr.Bitwise{SourceRegister: nftReg, DestRegister: nftReg, Len: 4,
		Mask: binaryutil.NativeEndian.PutUint32(m), Xor: make([]byte, 4)}
}

// markBits matches packets whose mark has all bits of m.
func markBits(r *nftRuleIR, m uint32) *nftRuleIR {
	return r.add(fmt.Sprintf("meta mark & %s == %s", hex(m), hex(m)),
		&expr.Meta{Key: expr.MetaKeyMARK, Register: nftReg}, andMask(m),
		&expr.Cmp{Op: expr.CmpOpEq, Register: nftReg, Data: binaryutil.NativeEndian.PutUint32(m)})
}

// queueStmt appends the NFQUEUE compat target (the native `queue` statement
// is not available on every kernel): xt_NFQ_info_v3 {u16 queuenum, u16
// queues_total, u16 flags}, padded to 8 bytes. With bypass the kernel
// accepts a packet whose queue has no reader; without, it drops it. This is
// the only place the flag is set.
func queueStmt(r *nftRuleIR, q QueueSet, bypass bool) {
	info := make([]byte, 8)
	binary.NativeEndian.PutUint16(info[0:], q.First)
	binary.NativeEndian.PutUint16(info[2:], q.Count)
	text := fmt.Sprintf("xt target NFQUEUE --queue-num %d", q.First)
	if q.Count > 1 {
		text = fmt.Sprintf("xt target NFQUEUE --queue-balance %d:%d", q.First, int(q.First)+int(q.Count)-1)
	}
	if bypass {
		binary.NativeEndian.PutUint16(info[4:], nfqFlagBypass)
		text += " --queue-bypass"
	}
	unknown := xt.Unknown(info)
	r.add(text, &expr.Target{Name: "NFQUEUE", Rev: 3, Info: &unknown})
}

// matchLookup appends "<text> { elems }" matching register 1 against a set.
func matchLookup(r *nftRuleIR, text string, keyType nftables.SetDatatype, interval bool, elems []nftables.SetElement, names []string) {
	l := &expr.Lookup{SourceRegister: nftReg}
	r.sets = append(r.sets, &nftSetIR{keyType: keyType, interval: interval, elems: elems, lookup: l})
	r.add(text+" { "+strings.Join(names, ", ")+" }", l)
}

func matchL4Proto(r *nftRuleIR, protos []uint8) {
	protos = slices.Compact(slices.Sorted(slices.Values(protos)))
	load := &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: nftReg}
	if len(protos) == 1 {
		r.add("meta l4proto "+protoName(protos[0]), load, &expr.Cmp{Op: expr.CmpOpEq, Register: nftReg, Data: []byte{protos[0]}})
		return
	}
	r.add("", load)
	var names []string
	var elems []nftables.SetElement
	for _, p := range protos {
		names = append(names, protoName(p))
		elems = append(elems, nftables.SetElement{Key: []byte{p}})
	}
	matchLookup(r, "meta l4proto", nftables.TypeInetProto, false, elems, names)
}

func matchPorts(r *nftRuleIR, field string, offset uint32, ports []uint16) {
	if len(ports) == 0 {
		return
	}
	ports = slices.Compact(slices.Sorted(slices.Values(ports)))
	load := &expr.Payload{DestRegister: nftReg, Base: expr.PayloadBaseTransportHeader, Offset: offset, Len: 2}
	if len(ports) == 1 {
		r.add(fmt.Sprintf("th %s %d", field, ports[0]), load,
			&expr.Cmp{Op: expr.CmpOpEq, Register: nftReg, Data: binaryutil.BigEndian.PutUint16(ports[0])})
		return
	}
	r.add("", load)
	var names []string
	var elems []nftables.SetElement
	for _, p := range ports {
		names = append(names, strconv.Itoa(int(p)))
		elems = append(elems, nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(p)})
	}
	matchLookup(r, "th "+field, nftables.TypeInetService, false, elems, names)
}

func matchIfaces(r *nftRuleIR, field string, key expr.MetaKey, names []string) {
	if len(names) == 0 || slices.Contains(names, "*") {
		return
	}
	names = slices.Compact(slices.Sorted(slices.Values(names)))
	load := &expr.Meta{Key: key, Register: nftReg}
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = strconv.Quote(n)
	}
	if len(names) == 1 {
		data := []byte(strings.TrimSuffix(names[0], "*"))
		if !strings.HasSuffix(names[0], "*") {
			data = ifnameKey(names[0])
		}
		r.add(field+" "+quoted[0], load, &expr.Cmp{Op: expr.CmpOpEq, Register: nftReg, Data: data})
		return
	}
	r.add("", load)
	var ivs []addrInterval
	for _, n := range names {
		prefix, wild := strings.CutSuffix(n, "*")
		lo := ifnameKey(prefix)
		var hi []byte
		if wild {
			hi = increment([]byte(prefix))
			if hi != nil {
				hi = append(hi, make([]byte, unix.IFNAMSIZ-len(hi))...)
			}
		} else {
			hi = increment(lo)
		}
		ivs = append(ivs, addrInterval{lo, hi})
	}
	matchLookup(r, field, nftables.TypeIFName, true, intervalElems(ivs, unix.IFNAMSIZ), quoted)
}

func ifnameKey(name string) []byte {
	k := make([]byte, unix.IFNAMSIZ)
	copy(k, name)
	return k
}

func matchAddrs(r *nftRuleIR, fam int, field string, prefixes []netip.Prefix) {
	var ps []netip.Prefix
	for _, p := range prefixes {
		p = normPrefix(p)
		if p.Addr().Is4() == (fam == 4) {
			ps = append(ps, p)
		}
	}
	if len(ps) == 0 {
		return
	}
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	ps = slices.Compact(ps)
	// Drop prefixes inside others (the set would merge them anyway).
	all := slices.Clone(ps)
	ps = slices.DeleteFunc(ps, func(p netip.Prefix) bool {
		for _, q := range all {
			if q.Bits() < p.Bits() && q.Contains(p.Addr()) {
				return true
			}
		}
		return false
	})
	if len(ps) == 1 && ps[0].Bits() == 0 {
		return // matches every address
	}
	size := uint32(4)
	offset := map[string]uint32{"saddr": 12, "daddr": 16}[field]
	name, keyType := "ip", nftables.TypeIPAddr
	if fam == 6 {
		size, offset, name, keyType = 16, map[string]uint32{"saddr": 8, "daddr": 24}[field], "ip6", nftables.TypeIP6Addr
	}
	load := &expr.Payload{DestRegister: nftReg, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: size}
	if len(ps) == 1 {
		p := ps[0]
		r.add(name+" "+field+" "+prefixText(p), load)
		if p.Bits() < int(size*8) {
			r.add("", &expr.Bitwise{SourceRegister: nftReg, DestRegister: nftReg, Len: size,
				Mask: prefixMask(p.Bits(), int(size)), Xor: make([]byte, size)})
		}
		r.add("", &expr.Cmp{Op: expr.CmpOpEq, Register: nftReg, Data: p.Addr().AsSlice()})
		return
	}
	r.add("", load)
	var ivs []addrInterval
	var names []string
	for _, p := range ps {
		lo := p.Addr().AsSlice()
		hi := increment(lastAddr(p))
		ivs = append(ivs, addrInterval{lo, hi})
		names = append(names, prefixText(p))
	}
	matchLookup(r, name+" "+field, keyType, true, intervalElems(ivs, int(size)), names)
}

// normPrefix masks p and turns an IPv4-mapped IPv6 prefix into IPv4.
func normPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked()
}

func prefixText(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

func prefixMask(bits, size int) []byte {
	m := make([]byte, size)
	for i := 0; i < bits; i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}

func lastAddr(p netip.Prefix) []byte {
	a := p.Addr().AsSlice()
	for i := p.Bits(); i < len(a)*8; i++ {
		a[i/8] |= 0x80 >> (i % 8)
	}
	return a
}

// increment returns b+1 as a big-endian number, nil on overflow.
func increment(b []byte) []byte {
	out := slices.Clone(b)
	for i := len(out) - 1; i >= 0; i-- {
		out[i]++
		if out[i] != 0 {
			return out
		}
	}
	return nil
}

// addrInterval is [lo, hi) over big-endian keys; hi nil means to the end.
type addrInterval struct{ lo, hi []byte }

// intervalElems merges overlapping intervals and encodes them the way
// nft does: a leading interval end at zero, then each start and its
// exclusive end flagged IntervalEnd.
func intervalElems(ivs []addrInterval, size int) []nftables.SetElement {
	slices.SortFunc(ivs, func(a, b addrInterval) int { return bytes.Compare(a.lo, b.lo) })
	var merged []addrInterval
	for _, iv := range ivs {
		if n := len(merged); n > 0 {
			last := &merged[n-1]
			if last.hi == nil || bytes.Compare(iv.lo, last.hi) <= 0 {
				if last.hi != nil && (iv.hi == nil || bytes.Compare(iv.hi, last.hi) > 0) {
					last.hi = iv.hi
				}
				continue
			}
		}
		merged = append(merged, iv)
	}
	var elems []nftables.SetElement
	zero := make([]byte, size)
	if !bytes.Equal(merged[0].lo, zero) {
		elems = append(elems, nftables.SetElement{Key: zero, IntervalEnd: true})
	}
	for _, iv := range merged {
		elems = append(elems, nftables.SetElement{Key: iv.lo})
		if iv.hi != nil {
			elems = append(elems, nftables.SetElement{Key: iv.hi, IntervalEnd: true})
		}
	}
	return elems
}

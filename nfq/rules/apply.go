package rules

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/google/nftables"
)

// Change says what Tables.Apply did to the kernel.
type Change int

// Changes, from least to most disruptive.
const (
	// ChangeNone: the rules were byte-for-byte the same; the kernel was not
	// touched.
	ChangeNone Change = iota
	// ChangeRules: rules were swapped inside existing chains; every hook
	// stayed registered.
	ChangeRules
	// ChangeChains: chains were added, or emptied (a base chain no longer
	// needed stays registered, empty, until the tables are removed).
	ChangeChains
	// ChangeReplaced: the tables were deleted and created anew (first
	// install, another table name, or a restore).
	ChangeReplaced
)

func (c Change) String() string {
	return [...]string{"none", "rules swapped", "chains added or emptied", "tables replaced"}[c]
}

// Tables keeps luafw's tables in one network namespace in line with the
// rule sets given to Apply, changing as little as it can: packets waiting
// in a queue survive rule swaps inside a chain, but the kernel drops every
// packet queued in the namespace when any netfilter hook is unregistered
// (nf_queue_nf_hook_drop), which deleting a base chain or a table does.
// So Apply never deletes a base chain while the tables stay: one no longer
// needed is emptied and kept, and reused if its hook and priority come
// back. A hook's tail chain, once installed, stays with its rule until the
// tables are removed. Verify tells whether someone else changed the tables
// since.
//
// A Tables acts in the network namespace of the calling thread and is not
// safe for concurrent use.
type Tables struct {
	name string
	// chains are the chains installed, by family then name; a retired base
	// chain has no rules.
	chains map[nftables.TableFamily]map[string]*nftChainIR
	seen   string // the kernel's state right after our last change
	known  bool   // seen could be read
}

// Apply makes the namespace's tables match rs in one nftables transaction
// (or changes nothing and returns an error). The first Apply replaces any
// tables of the same name left by an earlier run.
func (t *Tables) Apply(ctx context.Context, rs Set) (Change, error) {
	prog, err := rs.build()
	if err != nil {
		return ChangeNone, fmt.Errorf("nfq/rules: apply rules: %w", err)
	}
	if t.chains == nil || prog.name != t.name {
		return ChangeReplaced, t.replace(ctx, prog)
	}
	plan := t.diff(prog)
	if plan.empty() {
		return ChangeNone, nil
	}
	c, err := nftConn(ctx)
	if err != nil {
		return ChangeNone, fmt.Errorf("nfq/rules: apply rules: %w", err)
	}
	if err := plan.emit(c, prog.name); err != nil {
		return ChangeNone, fmt.Errorf("nfq/rules: apply rules: %w", err)
	}
	if err := c.Flush(); err != nil {
		return ChangeNone, fmt.Errorf("nfq/rules: apply rules (table %s): %w", prog.name, err)
	}
	plan.commit(t)
	t.readBack(c)
	if len(plan.added)+len(plan.retired)+len(plan.deleted) > 0 {
		return ChangeChains, nil
	}
	return ChangeRules, nil
}

// Restore replaces the tables with what the last Apply installed (for when
// someone else changed or removed them).
func (t *Tables) Restore(ctx context.Context) error {
	if t.chains == nil {
		return fmt.Errorf("nfq/rules: restore rules: nothing applied yet")
	}
	prog := &nftProgram{name: t.name}
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6} {
		chains, ok := t.chains[fam]
		if !ok {
			continue
		}
		tb := &nftTableIR{family: fam}
		for _, name := range slices.Sorted(maps.Keys(chains)) {
			tb.chains = append(tb.chains, chains[name])
		}
		prog.tables = append(prog.tables, tb)
	}
	return t.replace(ctx, prog)
}

// Remove deletes the tables.
func (t *Tables) Remove(ctx context.Context) error {
	name := t.name
	t.chains, t.seen, t.known = nil, "", false
	if name == "" {
		return nil
	}
	return Remove(ctx, name)
}

// Verify compares the tables in the kernel with what the last Apply left
// there: tables, their flags, chains (hook, priority, policy) and rule
// handles (any rule added, deleted or replaced gets a new handle). It
// returns "" when they match, else what differs.
func (t *Tables) Verify(ctx context.Context) (string, error) {
	if t.chains == nil {
		return "", nil
	}
	// One socket for the dozen dumps (else each opens its own).
	c, err := nftConn(ctx, nftables.AsLasting())
	if err != nil {
		return "", fmt.Errorf("nfq/rules: verify rules: %w", err)
	}
	defer c.CloseLasting()
	now, err := readTables(c, t.name)
	if err != nil {
		return "", fmt.Errorf("nfq/rules: verify rules: %w", err)
	}
	if !t.known {
		t.seen, t.known = now, true // not read back after our last change
		return "", nil
	}
	return describeDiff(t.seen, now), nil
}

// replace deletes the tables and creates prog's in one transaction.
func (t *Tables) replace(ctx context.Context, prog *nftProgram) error {
	c, err := nftConn(ctx)
	if err != nil {
		return fmt.Errorf("nfq/rules: install rules: %w", err)
	}
	if t.name != "" && t.name != prog.name {
		deleteTables(c, t.name)
	}
	deleteTables(c, prog.name)
	if err := prog.add(c); err != nil {
		return fmt.Errorf("nfq/rules: install rules: %w", err)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nfq/rules: install rules (table %s): %w", prog.name, err)
	}
	t.name = prog.name
	t.chains = map[nftables.TableFamily]map[string]*nftChainIR{}
	for _, tb := range prog.tables {
		m := map[string]*nftChainIR{}
		for _, ch := range tb.chains {
			m[ch.name] = ch
		}
		t.chains[tb.family] = m
	}
	t.readBack(c)
	return nil
}

// readBack records the kernel's state after our change. The change is
// made either way: if the state cannot be read now, the next Verify takes
// what it reads as the baseline.
func (t *Tables) readBack(c *nftables.Conn) {
	seen, err := readTables(c, t.name)
	t.seen, t.known = seen, err == nil
}

// chainRef is a chain of one family's table.
type chainRef struct {
	fam nftables.TableFamily
	ch  *nftChainIR
}

// tableDiff is what turns the installed chains into a program's.
type tableDiff struct {
	tables  []nftables.TableFamily // to create
	added   []chainRef             // new chains, with their rules
	swapped []chainRef             // existing chains whose rules change
	retired []chainRef             // base chains to empty and keep
	deleted []chainRef             // regular chains to delete
	// next is the installed state once the diff is applied.
	next map[nftables.TableFamily]map[string]*nftChainIR
}

func (d *tableDiff) empty() bool {
	return len(d.tables)+len(d.added)+len(d.swapped)+len(d.retired)+len(d.deleted) == 0
}

// diff compares the installed chains with prog's, family by family.
func (t *Tables) diff(prog *nftProgram) *tableDiff {
	d := &tableDiff{next: map[nftables.TableFamily]map[string]*nftChainIR{}}
	want := map[nftables.TableFamily]*nftTableIR{}
	for _, tb := range prog.tables {
		want[tb.family] = tb
	}
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6} {
		have, installed := t.chains[fam]
		tb := want[fam]
		if !installed && tb == nil {
			continue
		}
		if !installed {
			d.tables = append(d.tables, fam)
		}
		next := map[string]*nftChainIR{}
		d.next[fam] = next
		if tb != nil {
			for _, ch := range tb.chains {
				next[ch.name] = ch
				old, ok := have[ch.name]
				switch {
				case !ok:
					d.added = append(d.added, chainRef{fam, ch})
				case !sameChain(old, ch):
					d.swapped = append(d.swapped, chainRef{fam, ch})
				}
			}
		}
		for _, name := range slices.Sorted(maps.Keys(have)) {
			old := have[name]
			if _, ok := next[name]; ok {
				continue
			}
			if !old.base {
				d.deleted = append(d.deleted, chainRef{fam, old})
				continue
			}
			if isTail(old) {
				// Kept as it is: a verdict the daemon computed before the
				// reload may still carry the skip bit out of the hook.
				next[name] = old
				continue
			}
			empty := &nftChainIR{name: old.name, base: true, hook: old.hook, hooknum: old.hooknum, prio: old.prio}
			next[name] = empty
			if len(old.rules) > 0 {
				d.retired = append(d.retired, chainRef{fam, empty})
			}
		}
	}
	return d
}

// isTail tells a hook's tail chain (see Set.tailRule).
func isTail(ch *nftChainIR) bool { return ch.base && ch.prio == TailPriority }

// sameChain reports whether two chains are the same down to their rules'
// text, which renders every match, value and comment.
func sameChain(a, b *nftChainIR) bool {
	if a.base != b.base || a.hooknum != b.hooknum || a.prio != b.prio || len(a.rules) != len(b.rules) {
		return false
	}
	for i := range a.rules {
		if a.rules[i].comment != b.rules[i].comment || !slices.Equal(a.rules[i].text, b.rules[i].text) {
			return false
		}
	}
	return true
}

// emit queues the diff as one transaction: tables and new chains first (so
// jumps find them), then flushes, then rules, then deletions (no rule jumps
// to a deleted chain by then).
func (d *tableDiff) emit(c *nftables.Conn, name string) error {
	b := &nftBatch{c: c}
	tables := map[nftables.TableFamily]*nftables.Table{}
	for fam := range d.next {
		tables[fam] = &nftables.Table{Name: name, Family: fam}
	}
	for _, fam := range d.tables {
		b.table(name, fam)
	}
	for _, r := range d.added {
		b.chain(tables[r.fam], r.ch)
	}
	for _, r := range slices.Concat(d.swapped, d.retired, d.deleted) {
		c.FlushChain(r.ch.nft(tables[r.fam]))
	}
	for _, r := range slices.Concat(d.added, d.swapped) {
		if err := b.rules(tables[r.fam], r.ch); err != nil {
			return err
		}
	}
	for _, r := range d.deleted {
		c.DelChain(r.ch.nft(tables[r.fam]))
	}
	return nil
}

func (d *tableDiff) commit(t *Tables) { t.chains = d.next }

// readTables renders the kernel's state of our tables for comparison:
// one line per table, chain and rule handle.
func readTables(c *nftables.Conn, name string) (string, error) {
	var lines []string
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6} {
		famName := map[nftables.TableFamily]string{nftables.TableFamilyIPv4: "ip", nftables.TableFamilyIPv6: "ip6"}[fam]
		tables, err := c.ListTablesOfFamily(fam)
		if err != nil {
			return "", fmt.Errorf("list tables: %w", err)
		}
		var table *nftables.Table
		for _, tb := range tables {
			if tb.Name == name {
				table = tb
			}
		}
		if table == nil {
			continue
		}
		lines = append(lines, fmt.Sprintf("table %s %s flags %#x", famName, name, table.Flags))
		chains, err := c.ListChainsOfTableFamily(fam)
		if err != nil {
			return "", fmt.Errorf("list chains: %w", err)
		}
		for _, ch := range chains {
			if ch.Table.Name != name {
				continue
			}
			line := fmt.Sprintf("table %s %s chain %s", famName, name, ch.Name)
			if ch.Hooknum != nil && ch.Priority != nil {
				line += fmt.Sprintf(" hook %d priority %d type %s", *ch.Hooknum, *ch.Priority, ch.Type)
			}
			if ch.Policy != nil {
				line += fmt.Sprintf(" policy %d", *ch.Policy)
			}
			rules, err := c.GetRules(table, ch)
			if err != nil {
				return "", fmt.Errorf("list rules of %s: %w", ch.Name, err)
			}
			handles := make([]string, len(rules))
			for i, r := range rules {
				handles[i] = fmt.Sprint(r.Handle)
			}
			lines = append(lines, line+" rules ["+strings.Join(handles, " ")+"]")
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n"), nil
}

// describeDiff names the lines missing from and added to was in now.
func describeDiff(was, now string) string {
	if was == now {
		return ""
	}
	a, b := strings.Split(was, "\n"), strings.Split(now, "\n")
	var out []string
	for _, l := range a {
		if l != "" && !slices.Contains(b, l) {
			out = append(out, "gone or changed: "+l)
		}
	}
	for _, l := range b {
		if l != "" && !slices.Contains(a, l) {
			out = append(out, "new: "+l)
		}
	}
	if len(out) == 0 {
		return "tables changed"
	}
	return strings.Join(out, "; ")
}

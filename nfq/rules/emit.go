package rules

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
)

// nftBatch emits a program's tables, chains and rules into one nftables
// transaction (nothing reaches the kernel before Conn.Flush).
type nftBatch struct {
	c     *nftables.Conn
	setID uint32 // ids of the anonymous sets, unique within the batch
}

// add queues the creation of every table, chain and rule of prog: chains
// first, so jumps find their targets.
func (prog *nftProgram) add(c *nftables.Conn) error {
	b := &nftBatch{c: c}
	for _, tb := range prog.tables {
		t := b.table(prog.name, tb.family)
		for _, ch := range tb.chains {
			b.chain(t, ch)
		}
		for _, ch := range tb.chains {
			if err := b.rules(t, ch); err != nil {
				return err
			}
		}
	}
	return nil
}

func (b *nftBatch) table(name string, fam nftables.TableFamily) *nftables.Table {
	// Adding an existing table is a no-op.
	return b.c.AddTable(&nftables.Table{Name: name, Family: fam})
}

// chain queues the creation of ch; for an existing chain with the same hook
// and priority it is a no-op (the hook stays registered).
func (b *nftBatch) chain(t *nftables.Table, ch *nftChainIR) *nftables.Chain {
	return b.c.AddChain(ch.nft(t))
}

// nft is the library's description of ch in table t.
func (ch *nftChainIR) nft(t *nftables.Table) *nftables.Chain {
	nc := &nftables.Chain{Name: ch.name, Table: t}
	if ch.base {
		nc.Type = nftables.ChainTypeFilter
		nc.Hooknum = nftables.ChainHookRef(ch.hooknum)
		nc.Priority = nftables.ChainPriorityRef(nftables.ChainPriority(ch.prio))
	}
	return nc
}

// rules queues ch's rules (and their anonymous sets), appended to the
// chain's.
func (b *nftBatch) rules(t *nftables.Table, ch *nftChainIR) error {
	nc := ch.nft(t)
	for _, r := range ch.rules {
		for _, s := range r.sets {
			b.setID++
			ns := &nftables.Set{
				Table: t, ID: b.setID, Name: "__set%d",
				Anonymous: true, Constant: true, Interval: s.interval,
				KeyType: s.keyType,
			}
			if err := b.c.AddSet(ns, s.elems); err != nil {
				return fmt.Errorf("set in chain %s: %w", ch.name, err)
			}
			s.lookup.SetName, s.lookup.SetID = ns.Name, ns.ID
		}
		nr := &nftables.Rule{Table: t, Chain: nc, Exprs: r.exprs}
		if r.comment != "" {
			nr.UserData = userdata.AppendString(nil, userdata.TypeComment, r.comment)
		}
		b.c.AddRule(nr)
	}
	return nil
}

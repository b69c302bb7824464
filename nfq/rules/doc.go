// Package rules owns luafw's nftables rules: the tables "ip <Table>" and
// "ip6 <Table>" whose base chains divert each hook segment's packets to its
// NFQUEUE queues (Set, Diversion, Filter, Match), the tail chains that clear
// luafw's mark bits at the end of a hook, and their packet counters; and the
// bans table "inet <Table>" (BanTable), whose sets with timeouts drop the
// packets of banned sources in prerouting before any queue.
//
// Guarantees: nothing outside our tables is read or changed. Install and
// Tables.Apply change the kernel in one nftables transaction, all or
// nothing; Apply changes a running rule set without deleting a base chain
// (which would flush the packets queued through it). Set.String renders
// exactly what Install creates, since both come from one built program. A
// Set is checked before anything reaches the kernel (hooks, priorities,
// queue ranges, table names, ports only with protocols that have them).
//
// Costs: each Install, Apply or counter read is one netlink exchange with
// nf_tables on a fresh socket in the calling thread's network namespace,
// bounded by the context's deadline (10 s without one). Diversion rules run
// in the kernel for every packet of their hook; a Filter or Match narrows a
// diversion so that packets no callback wants never leave the kernel.
package rules

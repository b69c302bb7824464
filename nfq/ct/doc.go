// Package ct owns luafw's conntrack access over ctnetlink: looking up a
// connection's entry (Conn.Get), updating its mark, labels and timeout
// (Conn.Update, and off the packet path with Updater), and reading the
// conntrack attributes the kernel attaches to queued packets (StateOf,
// MarkOf, PacketsOf on NFQA_CT_INFO and the NFQA_CT nest).
//
// Guarantees: updates change only the bits asked for (mark and labels are
// masked); an entry that does not exist yet (unconfirmed, its first packet
// still queued) is retried by the Updater for up to a second (at most
// 16,384 waiting), and updates of
// one entry waiting together apply in submission order. Errors wrap
// ErrNotFound and ErrNoLabelSpace. A Conn is opened in the calling thread's
// network namespace and stays in it; it is safe for concurrent use.
//
// Costs: the messages are built by hand into reused buffers, so Get and
// Update allocate little; each Get is one request and reply, and an Updater
// sends its pending updates in batches (one sendmsg for many entries).
// Calls on one Conn are serialized: open one per goroutine for parallel
// lookups. The attribute readers only walk bytes they are given. The lab
// tests build their flows with github.com/ti-mo/conntrack, and its IPS_*
// status bits name the kernel's.
package ct

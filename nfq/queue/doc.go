// Package queue owns luafw's NFQUEUE sockets: one NETLINK_NETFILTER socket
// bound to one or more queue numbers (Open), a reader that receives packets
// in bursts and hands each burst to a handler (Socket.Serve), and the
// verdicts, marks and rewritten payloads sent back for them in one batch.
//
// Guarantees: every packet Serve reads gets exactly one verdict — the
// handler's, or the socket's fail verdict (drop; accept with FailOpen) for
// a packet it cannot hand over (malformed, oversized, or the handler
// panicked). Kernel features that may be missing (NFQA_CT, GSO, uid/gid)
// are asked for and reported in Info rather than failing the open. Sockets
// are opened in the calling thread's network namespace and stay in it.
//
// Costs: Open preallocates every buffer Serve needs (Burst receive slots of
// about CopyRange bytes each, plus the verdict batch), so receiving,
// parsing and answering a burst allocates nothing: one recvmmsg for up to
// Burst datagrams and one sendmsg for their verdicts (split past 256 KiB).
// A Msg's Payload and CT point into the receive buffer and are valid only
// during the handler call. Stats and Info are safe from any goroutine; Serve
// runs on one goroutine at a time.
package queue

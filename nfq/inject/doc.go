// Package inject owns sending packets that luafw's scripts build (fw.send,
// replies): complete IPv4 and IPv6 packets, headers included, written to raw
// sockets (IPPROTO_RAW) of the network namespace the Injector was opened in.
// It is its own package because it shares nothing with the queue sockets,
// the rules or conntrack: it only needs the packet mark that the rules
// exempt from diversion (rules.Set.InjectMark).
//
// Guarantees: a packet enters the kernel's output path (output and
// postrouting hooks, routed by its destination) carrying the mark given to
// Send (SO_MARK). Without IPv6 (its socket cannot be opened) IPv6 packets
// are refused with an error; IPv4 still works.
//
// Costs: one sendto per packet, plus a setsockopt when the mark differs from
// the previous packet's. An Injector is meant for one goroutine.
package inject

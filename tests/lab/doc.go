// Package lab owns the namespace lab for end-to-end tests: a small network of
// Linux network namespaces (client, router, server) joined by veth pairs, with
// guarded ways to run commands and Go code inside them, bounded traffic
// senders, counting servers, and readers for iptables/nftables counters and
// conntrack entries. Any Go test of an NFQUEUE program can import it.
//
// # Topology
//
//	client (c0) 10.201.1.2/24 ── 10.201.1.1/24 (r0) router (r1) 10.201.2.1/24 ── 10.201.2.2/24 (s0) server
//	            fd00:201:1::2/64   fd00:201:1::1/64       fd00:201:2::1/64    fd00:201:2::2/64
//
// The client and the server route everything through the router; the router
// forwards IPv4 and IPv6. Loopback is up everywhere. Namespace names are
// "PREFIX-PID-RANDOM-ROLE" (for example "lfw-4242-9c1f0a-router"), so labs run
// in parallel without colliding; interface names inside are always c0, r0, r1
// and s0, their MAC addresses fixed (02:00 and the IPv4 address) and the
// neighbour entries permanent, so there is no ARP or NDP traffic or delay.
// The lab has no link to the machine's own namespace, so nothing sent inside
// it can leave the machine.
//
// # Safety
//
// Nothing in this package acts in the machine's own network namespace. Each
// namespace's inode is recorded when it is created (and must differ from the
// machine's). Every external command runs through a guard that compares the
// inode of the namespace it actually runs in with the recorded one and exits
// with status 97 before running anything when they differ ([ErrWrongNamespace]).
// Go code runs inside a namespace only through [NS.Do], which checks the same
// inode after entering and restores (and checks) the original namespace after;
// a thread that cannot be restored is thrown away. Traffic senders need a
// count and a context deadline, and only accept literal IP addresses (no name
// resolution).
//
// # Usage
//
// A test of your own NFQUEUE program running on the router:
//
//	func TestMyQueue(t *testing.T) {
//		l := lab.New(t, lab.Options{}) // skips when not root; closes at the end
//		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
//		defer cancel()
//
//		// Divert forwarded TCP to queue 0, inside the router only (sh -e).
//		if _, err := l.Router.Shell(ctx, "iptables -A FORWARD -p tcp -j NFQUEUE --queue-num 0"); err != nil {
//			t.Fatal(err)
//		}
//		// Run the program under test in the router, as a process
//		// (l.Router.Command(ctx, "./myqueue", "-queue", "0")) or in this
//		// process: sockets opened inside Do stay in the router namespace.
//		var q *nfqueue.Nfqueue
//		if err := l.Router.Do(func() (err error) { q, err = nfqueue.Open(&cfg); return err }); err != nil {
//			t.Fatal(err)
//		}
//		defer q.Close()
//		// ... q.RegisterWithErrorFunc(ctx, myHandler, ...)
//
//		srv, err := l.Server.ServeTCP(":8080") // echo server counting connections
//		if err != nil {
//			t.Fatal(err)
//		}
//		addr := netip.AddrPortFrom(l.Server.Addr4, srv.Port()).String()
//		if res := l.Client.TCPConnect(ctx, addr, 2*time.Second); res.Outcome != lab.Connected {
//			t.Fatalf("connect through the queue: %v", res)
//		}
//		pkts, _, err := l.Router.IptablesCounter(ctx, "filter", "FORWARD", "NFQUEUE")
//		flows, err := l.Router.Conntrack(ctx) // needs a conntrack-using rule
//		// ... assert on pkts, flows
//	}
//
// Outside tests (a demo, a benchmark) use [Start] and [Lab.Close]. A run that
// crashed leaves namespaces behind; [CleanupStale] removes those whose owning
// process is gone ([Start] calls it for its prefix).
package lab

package lab_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"
	"time"

	"github.com/luafw/luafw/tests/lab"
)

// Start builds a lab outside of a test (a demo, a benchmark). Inside a test,
// use lab.New(t, lab.Options{}), which also skips when not root and closes
// the lab when the test ends.
func ExampleStart() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := lab.Start(ctx, lab.Options{Prefix: "demo"})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	// Count what the router forwards to UDP port 9999 (guarded: runs only
	// inside the router namespace).
	if _, err := l.Router.Shell(ctx, "iptables -A FORWARD -p udp --dport 9999 -j ACCEPT"); err != nil {
		log.Fatal(err)
	}
	sink, err := l.Server.ServeUDP(":9999")
	if err != nil {
		log.Fatal(err)
	}
	dst := netip.AddrPortFrom(l.Server.Addr4, 9999).String()
	if _, err := l.Client.UDPFlood(ctx, dst, 1000, 64, 10000); err != nil {
		log.Fatal(err)
	}
	if err := sink.WaitCount(ctx, 1000); err != nil {
		log.Fatal(err)
	}
	pkts, _, err := l.Router.IptablesCounter(ctx, "filter", "FORWARD", "--dport 9999")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("received", sink.Count(), "forwarded", pkts)
}

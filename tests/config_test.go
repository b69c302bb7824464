package tests

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/luafw/luafw/tests/lab"
)

// kernelQueues reads the router's NFQUEUE table: queue number -> last
// packet id (how many packets the queue has taken) and waiting packets.
func kernelQueues(t *testing.T, ns *lab.NS) (taken, waiting map[int]int) {
	t.Helper()
	out, err := ns.Run(testCtx(t, 10*time.Second), "cat", "/proc/net/netfilter/nfnetlink_queue")
	if err != nil {
		t.Fatal(err)
	}
	taken, waiting = map[int]int{}, map[int]int{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		q, _ := strconv.Atoi(f[0])
		waiting[q], _ = strconv.Atoi(f[2])
		taken[q], _ = strconv.Atoi(f[7])
	}
	return taken, waiting
}

// TestBalancedQueues: with queue.balance 2, flows from several sources are
// spread over two queues (each with its own worker), and every packet is
// delivered.
func TestBalancedQueues(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 60*time.Second)
	var sources []netip.Addr
	script := ""
	for i := 10; i < 26; i++ {
		a := netip.MustParseAddr(fmt.Sprintf("10.201.1.%d", i))
		sources = append(sources, a)
		script += fmt.Sprintf("ip addr add %s/24 dev c0\n", a)
	}
	if _, err := l.Client.Shell(ctx, script); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, l.Router, map[string]string{
		"luafw.yaml": "queue: {balance: 2}\nconntrack: false\nplugins:\n  - file: count.lua\n",
		"count.lua":  `local n = state.counter("seen") fw.register{hook="forward", fn=function(pkt) n:incr() end}`,
	})
	sink, err := l.Server.ServeUDP(":9100")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	res, err := l.Client.UDPBlast(ctx, lab.Blast{Dst: netip.AddrPortFrom(l.Server.Addr4, 9100).String(),
		Sources: sources, Size: 32, Duration: 2 * time.Second, Max: 4000, Rate: 4000})
	if err != nil {
		t.Fatal(err)
	}
	sink.WaitCount(ctx, int64(res.Sent))
	if got := sink.Count(); got != int64(res.Sent) {
		t.Errorf("server received %d of %d packets", got, res.Sent)
	}
	taken, _ := kernelQueues(t, l.Router)
	if taken[1000] == 0 || taken[1001] == 0 {
		t.Errorf("both balanced queues should carry packets: queue 1000 took %d, 1001 took %d", taken[1000], taken[1001])
	}
	if taken[1000]+taken[1001] < res.Sent {
		t.Errorf("the queues took %d packets, fewer than the %d sent", taken[1000]+taken[1001], res.Sent)
	}
}

// TestOffloadAndDivert: divert narrows what leaves the kernel (UDP is never
// queued when only TCP is diverted); with offload, once classify has given a
// flow the offload bit, its later packets are not queued.
func TestOffloadAndDivert(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 60*time.Second)
	startDaemon(t, l.Router, map[string]string{
		"luafw.yaml": `plugins:
  - file: settle.lua
divert:
  forward: {protos: [tcp]}
offload: {mask: 0x100}
`,
		"settle.lua": `fw.register{hook="forward", fn=function(pkt)
			if pkt.ct.state == "new" then pkt.ct:set_mark(0x100, 0x100) end
		end}`,
	})
	// UDP: not diverted at all.
	sink, err := l.Server.ServeUDP(":9200")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	if sent, err := l.Client.UDPFlood(ctx, netip.AddrPortFrom(l.Server.Addr4, 9200).String(), 100, 32, 1000); err != nil || sent != 100 {
		t.Fatalf("udp: %d, %v", sent, err)
	}
	sink.WaitCount(ctx, 100)
	taken, _ := kernelQueues(t, l.Router)
	total := 0
	for _, n := range taken {
		total += n
	}
	if total != 0 {
		t.Errorf("UDP was queued (%d packets) although only TCP is diverted", total)
	}
	// TCP: the first packet is queued and classified; later packets of the
	// flow stay in the kernel.
	serveTCP(t, l.Server, 9201)
	conn, err := l.Client.Dial(ctx, "tcp", netip.AddrPortFrom(l.Server.Addr4, 9201).String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 5)
	for i := 0; i < 50; i++ {
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := conn.Write([]byte("ping\n")); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	taken, _ = kernelQueues(t, l.Router)
	total = 0
	for _, n := range taken {
		total += n
	}
	// About 200 packets crossed the router; only those before the ct mark
	// landed (the handshake, maybe a first data packet) were queued.
	if total == 0 || total > 10 {
		t.Errorf("%d TCP packets were queued; want the flow's first few only (offloaded after classification)", total)
	}
}

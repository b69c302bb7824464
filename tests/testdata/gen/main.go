// Command gen writes the capture of the replay golden test: traffic through
// a router that exercises every plugin of examples/all.yaml, and next to it
// the verdict each packet should get, written by hand here, so that the
// golden output can be checked against intent and not only against itself.
//
//	go run ./tests/testdata/gen -out tests/testdata
//
// It writes all.pcap (raw IP) and all.want.txt (n, verdict, deciding
// plugin, what the packet is). Regenerate all.expected.jsonl after it with
// `go test ./tests -run TestReplayGolden -update` and review the diff.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/luafw/luafw/host/dnsmsg"
	"github.com/luafw/luafw/host/packet"
	"github.com/luafw/luafw/host/tlshello"
	"github.com/luafw/luafw/pcap"
)

// Hosts of the scenario (documentation ranges; the LAN is 192.168.1.0/24).
var (
	server   = netip.MustParseAddr("192.168.1.2") // SSH and admin UI (8443), reachable from outside
	server6  = netip.MustParseAddr("2001:db8:1::2")
	client   = netip.MustParseAddr("192.168.1.10")
	client2  = netip.MustParseAddr("192.168.1.11")
	client6  = netip.MustParseAddr("2001:db8:1::10")
	listed   = netip.MustParseAddr("203.0.113.7")   // in lists/blocklist.sample.txt (203.0.113.0/25)
	listed1  = netip.MustParseAddr("198.51.100.66") // a single address in the list
	listed6  = netip.MustParseAddr("2001:db8:bad::1")
	unlisted = netip.MustParseAddr("203.0.113.200") // the half of TEST-NET-3 not listed
	attacker = netip.MustParseAddr("198.51.100.23")
	atk6a    = netip.MustParseAddr("2001:db8:66::1") // two addresses of one /64
	atk6b    = netip.MustParseAddr("2001:db8:66::2")
	knocker  = netip.MustParseAddr("198.51.100.44")
	badorder = netip.MustParseAddr("198.51.100.45")
	retrans  = netip.MustParseAddr("198.51.100.46")
	remote22 = netip.MustParseAddr("198.51.100.99")
	resolver = netip.MustParseAddr("198.51.100.53")
	resolv6  = netip.MustParseAddr("2001:db8:2::53")
	tlsBlock = netip.MustParseAddr("198.51.100.80")
	tlsVideo = netip.MustParseAddr("198.51.100.81")
	tlsOK    = netip.MustParseAddr("198.51.100.82")
	tls6     = netip.MustParseAddr("2001:db8:2::443")
	voip     = netip.MustParseAddr("198.51.100.70")
)

const (
	syn    = packet.TCPSyn
	synack = packet.TCPSyn | packet.TCPAck
	ack    = packet.TCPAck
	pshack = packet.TCPPsh | packet.TCPAck
)

// entry is one packet and what should become of it.
type entry struct {
	data []byte
	want string // "accept", or "drop PLUGIN" / "reject PLUGIN"
	note string
}

type scenario struct {
	entries []entry
	next    map[dir]uint32 // each direction's next sequence number
}

// dir is one direction of a TCP connection.
type dir struct {
	src, dst     netip.Addr
	sport, dport uint16
}

func (s *scenario) add(spec packet.Spec, want, note string) {
	b, err := packet.Build(spec)
	if err != nil {
		log.Fatalf("%s: %v", note, err)
	}
	s.entries = append(s.entries, entry{data: b, want: want, note: note})
}

// tcp adds a segment with the sequence numbers a TCP stack would give it:
// a SYN starts at 1000 (2000 for a SYN/ACK), data follows on.
func (s *scenario) tcp(src netip.Addr, sport uint16, dst netip.Addr, dport uint16, flags uint8, payload []byte, want, note string) {
	if s.next == nil {
		s.next = map[dir]uint32{}
	}
	d, back := dir{src, dst, sport, dport}, dir{dst, src, dport, sport}
	seq, ok := s.next[d]
	if flags&syn != 0 || !ok {
		seq = 1000
		if flags&packet.TCPAck != 0 && flags&syn != 0 {
			seq = 2000
		}
	}
	s.next[d] = seq + uint32(len(payload))
	if flags&syn != 0 {
		s.next[d] = seq + 1
	}
	s.add(packet.Spec{Src: src, Dst: dst, Proto: packet.ProtoTCP, SrcPort: sport, DstPort: dport,
		TCPFlags: flags, Payload: payload, Seq: seq, Ack: s.next[back]}, want, note)
}

func (s *scenario) udp(src netip.Addr, sport uint16, dst netip.Addr, dport uint16, payload []byte, want, note string) {
	s.add(packet.Spec{Src: src, Dst: dst, Proto: packet.ProtoUDP, SrcPort: sport, DstPort: dport, Payload: payload}, want, note)
}

// handshake adds SYN, SYN/ACK and ACK of a connection that is let through.
func (s *scenario) handshake(src netip.Addr, sport uint16, dst netip.Addr, dport uint16, what string) {
	s.tcp(src, sport, dst, dport, syn, nil, "accept", what+": SYN")
	s.tcp(dst, dport, src, sport, synack, nil, "accept", what+": SYN/ACK")
	s.tcp(src, sport, dst, dport, ack, nil, "accept", what+": ACK")
}

func query(name string, qtype uint16) []byte {
	b, err := dnsmsg.AppendQuery(nil, 0x4242, name, qtype)
	if err != nil {
		log.Fatal(err)
	}
	return b
}

func build() *scenario {
	s := &scenario{}

	// blocklist: listed sources are dropped in prerouting, before classify.
	s.tcp(listed, 50000, server, 80, syn, nil, "drop blocklist", "listed network 203.0.113.0/25 (list file)")
	s.tcp(listed6, 50001, server6, 22, syn, nil, "drop blocklist", "listed IPv6 network (inline entry)")
	s.tcp(listed1, 50002, server, 443, syn, nil, "drop blocklist", "listed single address 198.51.100.66")
	s.tcp(unlisted, 50003, server, 80, syn, nil, "accept", "203.0.113.200: outside the listed half; classified web")

	// ratelimit: burst 3, then a ban; established connections survive it.
	s.tcp(attacker, 40001, server, 22, syn, nil, "accept", "ssh burst 1/5 (token 1 of 3)")
	s.tcp(server, 22, attacker, 40001, synack, nil, "accept", "server answers connection 1")
	s.tcp(attacker, 40002, server, 22, syn, nil, "accept", "ssh burst 2/5 (token 2)")
	s.tcp(attacker, 40003, server, 22, syn, nil, "accept", "ssh burst 3/5 (token 3)")
	s.tcp(attacker, 40004, server, 22, syn, nil, "drop ratelimit", "ssh burst 4/5: no token left, source banned")
	s.tcp(attacker, 40005, server, 22, syn, nil, "drop ratelimit", "ssh burst 5/5: banned")
	s.tcp(attacker, 40001, server, 22, pshack, []byte("SSH-2.0-x\r\n"), "accept", "banned source, established connection 1 goes on")
	for i := range 4 {
		s.tcp(client, uint16(40100+i), remote22, 22, syn, nil, "accept", fmt.Sprintf("LAN client ssh out %d/4: in ratelimit's allow list", i+1))
	}
	s.tcp(atk6a, 40201, server6, 22, syn, nil, "accept", "IPv6 ssh 1/4 from ::1 of a /64")
	s.tcp(atk6b, 40202, server6, 22, syn, nil, "accept", "IPv6 ssh 2/4 from ::2 of the same /64")
	s.tcp(atk6a, 40203, server6, 22, syn, nil, "accept", "IPv6 ssh 3/4: the /64's third token")
	s.tcp(atk6b, 40204, server6, 22, syn, nil, "drop ratelimit", "IPv6 ssh 4/4: the /64 shares one bucket, banned")

	// portknock: 8443 opens after 7000, 8000, 9000.
	s.tcp(knocker, 41000, server, 8443, syn, nil, "drop portknock", "admin UI before knocking")
	s.tcp(knocker, 41000, server, 7000, syn, nil, "drop portknock", "knock 1 (knocks are dropped)")
	s.tcp(knocker, 41000, server, 8000, syn, nil, "drop portknock", "knock 2")
	s.tcp(knocker, 41000, server, 9000, syn, nil, "drop portknock", "knock 3: open for 30 s")
	s.tcp(knocker, 41001, server, 8443, syn, nil, "accept", "admin UI after the knock")
	s.tcp(server, 8443, knocker, 41001, synack, nil, "accept", "admin UI answers")
	s.tcp(badorder, 41100, server, 7000, syn, nil, "drop portknock", "wrong order: knock 1")
	s.tcp(badorder, 41100, server, 9000, syn, nil, "drop portknock", "wrong order: 9000 instead of 8000 resets")
	s.tcp(badorder, 41100, server, 8000, syn, nil, "drop portknock", "wrong order: 8000 after the reset")
	s.tcp(badorder, 41101, server, 8443, syn, nil, "drop portknock", "wrong order: admin UI stays closed")
	s.tcp(retrans, 41200, server, 7000, syn, nil, "drop portknock", "retransmitted knock: 7000")
	s.tcp(retrans, 41200, server, 7000, syn, nil, "drop portknock", "retransmitted knock: 7000 again (ignored)")
	s.tcp(retrans, 41200, server, 8000, syn, nil, "drop portknock", "retransmitted knock: 8000")
	s.tcp(retrans, 41200, server, 9000, syn, nil, "drop portknock", "retransmitted knock: 9000")
	s.tcp(retrans, 41201, server, 8443, syn, nil, "accept", "retransmitted knock: admin UI open")

	// dnsfilter: names and their subdomains, allow list, malformed input.
	s.udp(client, 53001, resolver, 53, query("www.example.org", 1), "accept", "DNS www.example.org A; classified dns")
	s.udp(client, 53002, resolver, 53, query("ads.example", 1), "reject dnsfilter", "DNS ads.example A (listed)")
	s.udp(client, 53003, resolver, 53, query("CDN.Tracker.Example", 28), "reject dnsfilter", "DNS CDN.Tracker.Example AAAA (subdomain, case folded)")
	s.udp(client, 53004, resolver, 53, query("ok.tracker.example", 1), "accept", "DNS ok.tracker.example (allow list)")
	s.udp(client, 53005, resolver, 53, query("notads.example", 1), "accept", "DNS notads.example: not a subdomain of ads.example")
	cut := query("ads.example", 1)
	s.udp(client, 53006, resolver, 53, cut[:17], "accept", "DNS query cut inside the name: unparsable, passes")
	s.udp(client6, 53007, resolv6, 53, query("doubleclick.net", 65), "reject dnsfilter", "DNS over IPv6: doubleclick.net HTTPS")
	s.handshake(client, 53100, resolver, 53, "DNS over TCP")
	tcpq := query("x.ads.example", 1)
	tcpq = append([]byte{byte(len(tcpq) >> 8), byte(len(tcpq))}, tcpq...)
	s.tcp(client, 53100, resolver, 53, pshack, tcpq, "reject dnsfilter", "DNS over TCP: x.ads.example")
	s.udp(resolver, 53, client, 53001, query("www.example.org", 1), "accept", "DNS response to the first query")

	// sni: block by name, mark by name, names split over two segments.
	hello := func(spec tlshello.Spec) []byte { return tlshello.Build(spec) }
	s.handshake(client, 50001, tlsBlock, 443, "TLS to blocked.example")
	s.tcp(client, 50001, tlsBlock, 443, pshack, hello(tlshello.Spec{SNI: "blocked.example", ALPN: []string{"h2", "http/1.1"}, TLS13: true, GREASE: true}),
		"reject sni", "ClientHello blocked.example (GREASE, TLS 1.3)")
	s.handshake(client, 50002, tlsVideo, 443, "TLS to video.example")
	s.tcp(client, 50002, tlsVideo, 443, pshack, hello(tlshello.Spec{SNI: "Video.Example", TLS13: true}),
		"accept", "ClientHello Video.Example: marked 0x10 (packet and ct)")
	s.handshake(client, 50003, tlsOK, 443, "TLS with a split hello")
	split := hello(tlshello.Spec{SNI: "cdn.blocked.example", TLS13: true, GREASE: true, Padding: 1400, PadFirst: true})
	s.tcp(client, 50003, tlsOK, 443, ack, split[:1000], "accept", "split hello, segment 1: the name is not in it yet")
	s.tcp(client, 50003, tlsOK, 443, pshack, split[1000:], "reject sni", "split hello, segment 2: cdn.blocked.example")
	s.handshake(client, 50004, tlsOK, 443, "TLS to www.example.org")
	s.tcp(client, 50004, tlsOK, 443, pshack, hello(tlshello.Spec{SNI: "www.example.org", TLS13: true}), "accept", "ClientHello www.example.org")
	s.tcp(client, 50004, tlsOK, 443, pshack, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "accept", "not TLS on port 443: passes")
	s.handshake(client6, 50005, tls6, 443, "TLS over IPv6")
	s.tcp(client6, 50005, tls6, 443, pshack, hello(tlshello.Spec{SNI: "sub.blocked.example", TLS13: true}), "reject sni", "IPv6 ClientHello sub.blocked.example")
	s.handshake(client2, 50006, tlsOK, 443, "TLS hello that stops short")
	s.tcp(client2, 50006, tlsOK, 443, pshack, hello(tlshello.Spec{SNI: "blocked.example"})[:40], "accept", "ClientHello cut before its name, nothing follows")

	// classify: classes by protocol and port range; replies and unmatched flows.
	s.udp(client2, 16000, voip, 10500, []byte("rtp"), "accept", "VoIP (udp 10500): class 1, offloaded (ct 0x101)")
	s.udp(voip, 10500, client2, 16000, []byte("rtp"), "accept", "VoIP reply: same connection")
	s.add(packet.Spec{Src: client2, Dst: voip, Proto: packet.ProtoICMP, ICMPType: 8, Seq: 7<<16 | 1}, "accept", "ping: no class")
	s.udp(client2, 5000, voip, 20001, []byte("x"), "accept", "udp 20001: just outside the VoIP range, no class")
	s.udp(client2, 5001, voip, 20000, []byte("x"), "accept", "udp 20000: the range's last port, VoIP")
	return s
}

func main() {
	out := flag.String("out", "tests/testdata", "directory for all.pcap and all.want.txt")
	flag.Parse()
	s := build()

	f, err := os.Create(filepath.Join(*out, "all.pcap"))
	if err != nil {
		log.Fatal(err)
	}
	w, err := pcap.NewWriter(f, pcap.LinkTypeRaw)
	if err != nil {
		log.Fatal(err)
	}
	t := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, e := range s.entries {
		if err := w.WritePacket(t, e.data); err != nil {
			log.Fatal(err)
		}
		t = t.Add(10 * time.Millisecond)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}

	wf, err := os.Create(filepath.Join(*out, "all.want.txt"))
	if err != nil {
		log.Fatal(err)
	}
	bw := bufio.NewWriter(wf)
	fmt.Fprintln(bw, "# n\tverdict\tby\twhat (written by tests/testdata/gen: the intent the golden output is checked against)")
	for i, e := range s.entries {
		verdict, by := e.want, "-"
		if n, _ := fmt.Sscanf(e.want, "%s %s", &verdict, &by); n == 0 {
			log.Fatalf("bad want %q", e.want)
		}
		fmt.Fprintf(bw, "%d\t%s\t%s\t%s\n", i+1, verdict, by, e.note)
	}
	if err := bw.Flush(); err != nil {
		log.Fatal(err)
	}
	if err := wf.Close(); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("wrote %d packets to %s\n", len(s.entries), filepath.Join(*out, "all.pcap"))
}

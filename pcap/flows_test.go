package pcap

import (
	"net/netip"
	"testing"
)

var (
	client  = netip.MustParseAddr("10.0.0.1")
	server  = netip.MustParseAddr("10.0.0.2")
	client6 = netip.MustParseAddr("2001:db8::1")
	server6 = netip.MustParseAddr("2001:db8::2")
)

// step is one packet and the state it must get.
type step struct {
	proto        uint8
	src, dst     netip.Addr
	sport, dport uint16
	flags        uint8
	want         string
}

func run(t *testing.T, f *Flows, steps []step) []*Flow {
	t.Helper()
	var flows []*Flow
	for i, s := range steps {
		fl, got := f.Observe(s.proto, s.src, s.dst, s.sport, s.dport, s.flags)
		if got != s.want {
			t.Errorf("packet %d (%v:%d > %v:%d flags %#x): state %q, want %q", i+1, s.src, s.sport, s.dst, s.dport, s.flags, got, s.want)
		}
		if (fl == nil) != (got == StateInvalid) {
			t.Errorf("packet %d: flow %v with state %q", i+1, fl, got)
		}
		flows = append(flows, fl)
	}
	return flows
}

func TestFlowsTCPHandshake(t *testing.T) {
	f := NewFlows()
	flows := run(t, f, []step{
		{6, client, server, 40000, 80, TCPSyn, StateNew},
		{6, client, server, 40000, 80, TCPSyn, StateNew}, // retransmitted SYN
		{6, server, client, 80, 40000, TCPSyn | TCPAck, StateEstablished},
		{6, client, server, 40000, 80, TCPAck, StateEstablished},
		{6, client, server, 40000, 80, TCPAck | TCPPsh, StateEstablished},
		{6, server, client, 80, 40000, TCPAck | TCPFin, StateEstablished},
		{6, client, server, 40000, 80, TCPAck | TCPFin, StateEstablished},
		{6, server, client, 80, 40000, TCPAck, StateEstablished},
	})
	for i, fl := range flows {
		if fl != flows[0] {
			t.Fatalf("packet %d got a different flow", i+1)
		}
	}
	fl := flows[0]
	if fl.Packets != 8 || !fl.Replied() || fl.Orig() != netip.AddrPortFrom(client, 40000) || f.Len() != 1 {
		t.Errorf("flow %+v, %d flows", fl, f.Len())
	}
	if want := (FlowKey{6, netip.AddrPortFrom(client, 40000), netip.AddrPortFrom(server, 80)}); fl.Key != want {
		t.Errorf("key %v, want %v", fl.Key, want)
	}
	fl.Mark = 7
	// The connection is closed: a new SYN on the same ports opens a fresh
	// flow, now from the server side, with a fresh mark.
	fl2, st := f.Observe(6, server, client, 80, 40000, TCPSyn)
	if st != StateNew || fl2 == fl || fl2.Mark != 0 || fl2.Orig() != netip.AddrPortFrom(server, 80) || f.Len() != 1 {
		t.Errorf("reopen: state %q flow %+v", st, fl2)
	}
}

func TestFlowsTCPFirstPacket(t *testing.T) {
	f := NewFlows()
	run(t, f, []step{
		// Picked up mid-stream: loose tracking calls an ACK new.
		{6, client, server, 40001, 22, TCPAck | TCPPsh, StateNew},
		{6, server, client, 22, 40001, TCPAck, StateEstablished},
		// These cannot open a connection and create no flow.
		{6, client, server, 40002, 22, TCPSyn | TCPAck, StateInvalid},
		{6, client, server, 40003, 22, TCPRst, StateInvalid},
		{6, client, server, 40004, 22, TCPFin | TCPAck, StateInvalid},
		{6, client, server, 40005, 22, 0, StateInvalid},
		// An RST closes; a SYN then reopens.
		{6, client, server, 40001, 22, TCPRst | TCPAck, StateEstablished},
		{6, client, server, 40001, 22, TCPSyn, StateNew},
	})
	if f.Len() != 1 {
		t.Errorf("%d flows, want 1 (invalid packets create none)", f.Len())
	}
}

func TestFlowsUDPAndIndependence(t *testing.T) {
	f := NewFlows()
	flows := run(t, f, []step{
		{17, client, server, 5353, 53, 0, StateNew},
		{17, client, server, 5353, 53, 0, StateNew}, // retry, still unanswered
		{17, client6, server6, 5353, 53, 0, StateNew},
		{17, client, server, 5354, 53, 0, StateNew},
		{17, server, client, 53, 5353, 0, StateEstablished},
		{17, client, server, 5353, 53, 0, StateEstablished},
		{17, client, server, 5354, 53, 0, StateNew},     // its own flow saw no reply
		{6, client, server, 5353, 53, TCPSyn, StateNew}, // same ports, other protocol
		{17, server6, client6, 53, 5353, 0, StateEstablished},
	})
	a, v6, b, tcp := flows[0], flows[2], flows[3], flows[7]
	if a == b || a == v6 || a == tcp || b == v6 || f.Len() != 4 {
		t.Fatalf("flows not independent: %d flows", f.Len())
	}
	if a.Packets != 4 || b.Packets != 2 || v6.Packets != 2 || tcp.Packets != 1 {
		t.Errorf("packets: a %d b %d v6 %d tcp %d", a.Packets, b.Packets, v6.Packets, tcp.Packets)
	}
	if b.Replied() || !a.Replied() {
		t.Errorf("replied: a %v b %v", a.Replied(), b.Replied())
	}
}

func TestFlowsMarkPersists(t *testing.T) {
	f := NewFlows()
	fl, _ := f.Observe(17, client, server, 1000, 2000, 0)
	fl.Mark = 0x42
	fl.Labels[1] = 1 << 5
	reply, st := f.Observe(17, server, client, 2000, 1000, 0)
	if st != StateEstablished || reply != fl || reply.Mark != 0x42 || reply.Labels[1] != 1<<5 {
		t.Errorf("reply: state %q flow %+v", st, reply)
	}
	if got := f.Lookup(17, client, server, 1000, 2000); got != fl || got.Packets != 2 {
		t.Errorf("Lookup: %+v", got)
	}
	if got := f.Lookup(17, client, server, 1000, 2001); got != nil {
		t.Errorf("Lookup of an unseen flow: %+v", got)
	}
	other, _ := f.Observe(17, client, server, 1001, 2000, 0)
	if other.Mark != 0 {
		t.Errorf("new flow has mark %#x", other.Mark)
	}
}

func TestFlowsICMP(t *testing.T) {
	f := NewFlows()
	run(t, f, []step{
		{1, client, server, 77, 77, 0, StateNew}, // echo request, id 77
		{1, server, client, 77, 77, 0, StateEstablished},
		{1, client, server, 78, 78, 0, StateNew}, // another id: another flow
	})
	udpFlow, _ := f.Observe(17, client, server, 3000, 33434, 0)
	// A port unreachable quoting the UDP packet is related to its flow.
	fl, st := f.ObserveICMPError(17, client, server, 3000, 33434)
	if st != StateRelated || fl != udpFlow || fl.Packets != 1 {
		t.Errorf("ICMP error: state %q flow %+v", st, fl)
	}
	if fl, st := f.ObserveICMPError(17, client, server, 3001, 33434); st != StateInvalid || fl != nil {
		t.Errorf("ICMP error for an unknown flow: state %q flow %+v", st, fl)
	}
}

func BenchmarkFlowsObserve(b *testing.B) {
	f := NewFlows()
	b.ReportAllocs()
	var i uint16
	for b.Loop() {
		i++
		sport := 1024 + i%1000 // 1000 flows
		f.Observe(17, client, server, sport, 53, 0)
		f.Observe(17, server, client, 53, sport, 0)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*b.N), "ns/packet")
}

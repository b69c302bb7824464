package pcap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWriterRoundTripRaw(t *testing.T) {
	pkts := [][]byte{
		ipv4("192.0.2.1", "192.0.2.2", 17, udp(5353, 53, "query")),
		ipv6("2001:db8::1", "2001:db8::53", 17, udp(5353, 53, "query6")),
		ipv4("192.0.2.2", "192.0.2.1", 17, udp(53, 5353, "answer")),
	}
	base := time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.UTC)
	var buf bytes.Buffer
	w, err := NewWriter(&buf, LinkTypeRaw)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range pkts {
		if err := w.WritePacket(base.Add(time.Duration(i)*time.Second), p); err != nil {
			t.Fatal(err)
		}
	}
	if want := 24 + 3*16 + len(pkts[0]) + len(pkts[1]) + len(pkts[2]); buf.Len() != want {
		t.Errorf("file is %d bytes, want %d", buf.Len(), want)
	}
	r, err := NewReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if r.LinkType() != LinkTypeRaw {
		t.Errorf("LinkType = %d", r.LinkType())
	}
	got := readAll(t, buf.Bytes())
	if len(got) != len(pkts) {
		t.Fatalf("read %d packets, wrote %d", len(got), len(pkts))
	}
	for i, p := range got {
		want := base.Add(time.Duration(i) * time.Second).Truncate(time.Microsecond)
		if p.N != i+1 || !p.Time.Equal(want) || !bytes.Equal(p.Data, pkts[i]) ||
			p.CapLen != len(pkts[i]) || p.OrigLen != len(pkts[i]) || p.Skipped != "" {
			t.Errorf("packet %d: got %+v, want time %v data %x", i+1, p, want, pkts[i])
		}
	}
}

func TestWriterEthernet(t *testing.T) {
	v4 := ipv4("192.0.2.1", "192.0.2.2", 17, udp(1, 2, "x"))
	var buf bytes.Buffer
	w, err := NewWriter(&buf, LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WritePacket(time.Unix(10, 0), ether(0x0800, v4, 0x8100)); err != nil {
		t.Fatal(err)
	}
	if err := w.WritePacket(time.Unix(11, 0), arp()); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, buf.Bytes())
	if len(got) != 2 || !bytes.Equal(got[0].Data, v4) || got[1].Skipped == "" || got[1].N != 2 {
		t.Errorf("got %+v", got)
	}
	if lt := binary.LittleEndian.Uint32(buf.Bytes()[20:]); lt != LinkTypeEthernet {
		t.Errorf("header link type %d", lt)
	}
}

func TestWriterErrors(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, LinkTypeRaw)
	if err != nil {
		t.Fatal(err)
	}
	n := buf.Len()
	if err := w.WritePacket(time.Unix(1, 0), make([]byte, MaxCapLen+1)); err == nil {
		t.Error("oversized packet written")
	}
	if err := w.WritePacket(time.Unix(-1, 0), []byte{0x45}); err == nil {
		t.Error("packet before 1970 written")
	}
	if buf.Len() != n {
		t.Errorf("failed writes wrote %d bytes", buf.Len()-n)
	}
	if _, err := NewWriter(failWriter{}, LinkTypeRaw); !errors.Is(err, errFail) {
		t.Errorf("NewWriter on a failing writer: %v", err)
	}
}

var errFail = errors.New("disk full")

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errFail }

// TestTcpdumpReadsWriterOutput checks the writer's files with the reference
// implementation, and the reader with a nanosecond file tcpdump writes.
func TestTcpdumpReadsWriterOutput(t *testing.T) {
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		t.Skip("tcpdump is not installed")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "w.pcap")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(f, LinkTypeRaw)
	if err != nil {
		t.Fatal(err)
	}
	pkts := [][]byte{
		ipv4("192.0.2.1", "192.0.2.2", 17, udp(5353, 53, "query")),
		ipv6("2001:db8::1", "2001:db8::53", 17, udp(4444, 53, "query6")),
	}
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 654321000, time.UTC)
	for _, p := range pkts {
		if err := w.WritePacket(t0, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tcpdump, "-nn", "-tt", "-r", file).CombinedOutput()
	if err != nil {
		t.Fatalf("tcpdump -r: %v\n%s", err, out)
	}
	for _, want := range []string{
		"1714564800.654321 IP 192.0.2.1.5353 > 192.0.2.2.53: ",
		"1714564800.654321 IP6 2001:db8::1.4444 > 2001:db8::53.53: ",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("tcpdump output lacks %q:\n%s", want, out)
		}
	}

	// tcpdump rewrites the file with nanosecond timestamps; we read it back.
	nano := filepath.Join(dir, "nano.pcap")
	if out, err := exec.Command(tcpdump, "-r", file, "--time-stamp-precision=nano", "-w", nano).CombinedOutput(); err != nil {
		t.Fatalf("tcpdump -w: %v\n%s", err, out)
	}
	data, err := os.ReadFile(nano)
	if err != nil {
		t.Fatal(err)
	}
	if m := binary.LittleEndian.Uint32(data); m != magicNano && binary.BigEndian.Uint32(data) != magicNano {
		t.Fatalf("tcpdump wrote magic %#x, not the nanosecond one", m)
	}
	got := readAll(t, data)
	if len(got) != 2 || !got[0].Time.Equal(t0) || !bytes.Equal(got[0].Data, pkts[0]) || !bytes.Equal(got[1].Data, pkts[1]) {
		t.Errorf("reading tcpdump's nanosecond file: %+v", got)
	}
}

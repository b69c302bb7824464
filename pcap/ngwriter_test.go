package pcap

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ipv4UDP is a minimal IPv4/UDP packet 10.0.0.1:1000 -> 10.0.0.2:53.
var ipv4UDP = []byte{
	0x45, 0, 0, 29, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
	0x03, 0xe8, 0, 53, 0, 9, 0, 0, 'x',
}

func TestNGWriterRoundTrip(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 15, 0, 0, 123456789, time.UTC)
	b := NGHeader(LinkTypeRaw, 65535)
	b = AppendNGPacket(b, t0, ipv4UDP, 0, "plugin=p callback=c hook=input verdict=drop")
	b = AppendNGPacket(b, t0.Add(time.Second), ipv4UDP[:20], len(ipv4UDP), "")
	r, err := NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if !p.Time.Equal(t0) || !bytes.Equal(p.Data, ipv4UDP) || p.Comment != "plugin=p callback=c hook=input verdict=drop" || p.LinkType != LinkTypeRaw {
		t.Fatalf("first packet: %+v", p)
	}
	p, err = r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if p.Comment != "" || p.CapLen != 20 || p.OrigLen != len(ipv4UDP) {
		t.Fatalf("second packet: %+v", p)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("after the last packet: %v", err)
	}
}

// TestNGWriterTcpdump checks the files against Debian's tcpdump, the
// reader operators use.
func TestNGWriterTcpdump(t *testing.T) {
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		t.Skip("tcpdump is not installed (scripts/deps.sh installs it)")
	}
	path := filepath.Join(t.TempDir(), "c.pcapng")
	b := NGHeader(LinkTypeRaw, 65535)
	b = AppendNGPacket(b, time.Unix(1_700_000_000, 5), ipv4UDP, 0, "plugin=p verdict=drop")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tcpdump, "-nn", "-r", path).CombinedOutput()
	if err != nil {
		t.Fatalf("tcpdump -r: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "10.0.0.1.1000 > 10.0.0.2.53") {
		t.Fatalf("tcpdump read:\n%s", out)
	}
}

// TestCommentOptionsCutShort: options whose padding runs past the block
// end read as no comment, without panicking.
func TestCommentOptionsCutShort(t *testing.T) {
	r := &Reader{order: binary.LittleEndian}
	for _, opts := range [][]byte{
		{2, 0, 1, 0, 'x'},                   // an option with its padding cut off
		{2, 0, 1, 0, 'x', 0, 0, 0, 1, 0, 9}, // then a comment longer than what is left
		{1, 0, 200, 0, 'a'},                 // a comment longer than the block
		{1, 0},                              // a lone code
	} {
		if c := r.comment(opts); c != "" {
			t.Errorf("% x: comment %q, want none", opts, c)
		}
	}
	if c := r.comment([]byte{2, 0, 1, 0, 'x', 0, 0, 0, 1, 0, 2, 0, 'h', 'i', 0, 0}); c != "hi" {
		t.Errorf("comment after another option: %q", c)
	}
}

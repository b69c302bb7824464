package observe

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/luafw/luafw/config"
	"github.com/luafw/luafw/host/packet"
	"github.com/luafw/luafw/internal/engine"
	"github.com/luafw/luafw/pcap"
)

func TestLimiter(t *testing.T) {
	l := newLimiter(10, 3) // 10/s, 3 at once
	now := int64(1e12)
	got := 0
	for i := 0; i < 10; i++ {
		if l.allow(now) {
			got++
		}
	}
	if got != 3 {
		t.Fatalf("burst: %d allowed at one instant, want 3", got)
	}
	if l.allow(now + 50e6) {
		t.Fatal("allowed 50ms later with the burst spent, want refused (one per 100ms)")
	}
	if !l.allow(now + 100e6) {
		t.Fatal("refused 100ms later, want one allowed")
	}
	// Over 10 s at a steady flood, about rate*10 pass (plus the burst).
	got = 0
	for ms := int64(0); ms < 10_000; ms++ {
		if l.allow(now + int64(time.Second) + ms*int64(time.Millisecond)) {
			got++
		}
	}
	if got < 100 || got > 103 {
		t.Fatalf("10s of flood: %d allowed, want about 100", got)
	}
	if newLimiter(0, 0) != nil || !(*limiter)(nil).allow(0) {
		t.Fatal("rate 0 must mean no limit")
	}
}

func tcpPacket(t *testing.T) []byte { return tcpPacketB(t) }

func tcpPacketB(t testing.TB) []byte {
	b, err := packet.Build(packet.Spec{Src: netip.MustParseAddr("10.0.1.2"), Dst: netip.MustParseAddr("10.0.2.2"),
		Proto: packet.ProtoTCP, SrcPort: 40000, DstPort: 23, TCPFlags: packet.TCPSyn})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEventJSON(t *testing.T) {
	now := time.Date(2026, 12, 1, 15, 4, 5, 6, time.UTC)
	p := engine.Packet{Hook: engine.Forward, Data: tcpPacket(t), CTState: engine.CTNew, CTMark: 7, CTMarkKnown: true}
	d := engine.Decision{Verdict: engine.Drop, Hook: engine.Forward, By: "no_telnet", ByName: "forward", Mark: 0x10}
	e := newEvent(now, "forward@0", &p, &d)
	line := e.AppendJSON(nil)
	dec := json.NewDecoder(strings.NewReader(string(line)))
	dec.DisallowUnknownFields()
	var f Record
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	want := Record{Type: "decision", Time: "2026-12-01T15:04:05.000000006Z", Hook: "forward", Segment: "forward@0",
		Src: "10.0.1.2", Dst: "10.0.2.2", Proto: "tcp", SPort: 40000, DPort: 23, Len: len(p.Data), Verdict: "drop", Mark: 0x10, CTState: "new"}
	if f.Plugin == nil || *f.Plugin != "no_telnet" || f.Callback == nil || *f.Callback != "forward" || f.CTMark == nil || *f.CTMark != 7 {
		t.Fatalf("%s", line)
	}
	f.Plugin, f.Callback, f.CTMark = nil, nil, nil
	if f != want {
		t.Fatalf("got %+v\nwant %+v", f, want)
	}
	// No deciding callback, odd names: still valid JSON, plugin null.
	d = engine.Decision{Verdict: engine.Accept}
	e = newEvent(now, `seg"\`, &engine.Packet{Data: []byte{0x45}}, &d)
	var m map[string]any
	if err := json.Unmarshal(e.AppendJSON(nil), &m); err != nil || m["plugin"] != nil || m["segment"] != `seg"\` {
		t.Fatalf("%s: %v", e.AppendJSON(nil), err)
	}
}

func observer(t *testing.T, cfg string) (*Observer, context.CancelFunc) {
	t.Helper()
	f, err := config.Parse([]byte("plugins: [{file: a.lua}]\n"+cfg), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	o, err := New(f, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	o.Start(ctx)
	return o, cancel
}

func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var out []map[string]any
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// TestEventsRateLimited: a flood past the rate writes burst events and one
// suppressed record counting the rest; accepted packets are not events.
func TestEventsRateLimited(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ev.json")
	o, cancel := observer(t, "events: {file: "+path+", rate: 1/h, burst: 5}\n")
	p := engine.Packet{Hook: engine.Input, Data: tcpPacket(t)}
	drop := engine.Decision{Verdict: engine.Drop, By: "p", ByName: "cb"}
	acc := engine.Decision{Verdict: engine.Accept}
	for i := 0; i < 50; i++ {
		o.Record("input@0", &p, &drop)
		o.Record("input@0", &p, &acc)
	}
	cancel()
	o.Wait()
	lines := readLines(t, path)
	if len(lines) != 6 {
		t.Fatalf("%d lines, want 5 events and a suppressed record: %v", len(lines), lines)
	}
	for _, l := range lines[:5] {
		if l["type"] != "decision" || l["verdict"] != "drop" || l["plugin"] != "p" {
			t.Fatalf("event %v", l)
		}
	}
	if s := lines[5]; s["type"] != "suppressed" || s["suppressed"] != 45.0 || s["lost"] != 0.0 {
		t.Fatalf("last line %v, want 45 suppressed", s)
	}
	if st := o.Stats(); st.Events.Written != 5 || st.Events.Suppressed != 45 {
		t.Fatalf("stats %+v", st)
	}
}

// TestEventsLostWhenBehind: with the writer not running, a full queue
// drops and counts.
func TestEventsLostWhenBehind(t *testing.T) {
	f, _ := config.Parse([]byte("plugins: [{file: a.lua}]\nevents: {file: "+filepath.Join(t.TempDir(), "e")+", rate: 0, queue: 4}\n"), "c.yaml")
	o, err := New(f, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	p := engine.Packet{Data: tcpPacket(t)}
	for i := 0; i < 10; i++ {
		o.Record("s", &p, &engine.Decision{Verdict: engine.Reject})
	}
	if st := o.Stats(); st.Events.Lost != 6 {
		t.Fatalf("lost %d, want 6 of 10 with a queue of 4", st.Events.Lost)
	}
	ctx, cancel := context.WithCancel(context.Background())
	o.Start(ctx)
	cancel()
	o.Wait()
}

// TestCaptureFiles: chosen verdicts and pkt:capture() packets land in
// rotated pcapng files that the project's reader and tcpdump both read,
// each with its comment.
func TestCaptureFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.pcapng")
	o, cancel := observer(t, "capture: {file: "+path+", max_size: 4KiB, keep: 1}\n")
	p := engine.Packet{Hook: engine.Forward, Data: tcpPacket(t)}
	o.Record("forward@0", &p, &engine.Decision{Verdict: engine.Drop, By: "no_telnet", ByName: "forward"})
	o.Record("forward@0", &p, &engine.Decision{Verdict: engine.Accept, CaptureBy: "watch"})
	o.Record("forward@0", &p, &engine.Decision{Verdict: engine.Accept}) // not captured
	cancel()
	o.Wait()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	r, err := pcap.NewReader(fh)
	if err != nil {
		t.Fatal(err)
	}
	var comments []string
	for {
		pk, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if string(pk.Data) != string(p.Data) {
			t.Fatalf("packet %d differs", pk.N)
		}
		comments = append(comments, pk.Comment)
	}
	want := []string{"plugin=no_telnet callback=forward hook=forward verdict=drop segment=forward@0",
		"plugin=- callback=- hook=forward verdict=accept segment=forward@0 capture=watch"}
	if strings.Join(comments, "\n") != strings.Join(want, "\n") {
		t.Fatalf("comments:\n%s\nwant:\n%s", strings.Join(comments, "\n"), strings.Join(want, "\n"))
	}
	if tcpdump, err := exec.LookPath("tcpdump"); err == nil {
		out, err := exec.Command(tcpdump, "-nn", "-r", path).CombinedOutput()
		if err != nil || strings.Count(string(out), "10.0.1.2.40000 > 10.0.2.2.23") != 2 {
			t.Fatalf("tcpdump -r: %v\n%s", err, out)
		}
	}
}

// TestCaptureRotates: files stay under max_size and only keep of them are
// kept, each a readable pcapng on its own.
func TestCaptureRotates(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.pcapng")
	o, cancel := observer(t, "capture: {file: "+path+", max_size: 4KiB, keep: 2, queue: 1000}\n")
	p := engine.Packet{Hook: engine.Input, Data: tcpPacket(t)}
	for i := 0; i < 200; i++ {
		o.Record("input@0", &p, &engine.Decision{Verdict: engine.Drop, By: "p", ByName: "c"})
		if i%20 == 0 {
			time.Sleep(time.Millisecond) // let batches be written separately
		}
	}
	cancel()
	o.Wait()
	matches, _ := filepath.Glob(path + "*")
	if len(matches) != 3 {
		t.Fatalf("files %v, want the current one and 2 rotated", matches)
	}
	for _, m := range matches {
		st, _ := os.Stat(m)
		fh, _ := os.Open(m)
		r, err := pcap.NewReader(fh)
		if err != nil {
			t.Fatalf("%s: %v", m, err)
		}
		n := 0
		for {
			if _, err := r.Next(); err != nil {
				if err != io.EOF {
					t.Fatalf("%s: %v", m, err)
				}
				break
			}
			n++
		}
		fh.Close()
		if n == 0 {
			t.Errorf("%s holds no packet", m)
		}
		if st.Size() > 4096 {
			t.Errorf("%s: %d bytes", m, st.Size())
		}
	}
}

// failWriter fails every write.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, io.ErrShortWrite }
func (failWriter) Close() error              { return nil }

// TestWriteFailureCountsLost: records whose write failed are lost, not
// written.
func TestWriteFailureCountsLost(t *testing.T) {
	s := &sink[Event]{name: "events", batch: 100, ch: make(chan Event, 10), out: failWriter{},
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), encode: func(b []byte, e *Event) []byte { return e.AppendJSON(b) }}
	for i := 0; i < 5; i++ {
		s.offer(Event{})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.run(ctx)
	if c := s.counts(); c.Written != 0 || c.Lost != 5 {
		t.Fatalf("counts %+v, want 5 lost", c)
	}
}

package tests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/luafw/luafw/config"
	"github.com/luafw/luafw/internal/engine"
	"github.com/luafw/luafw/replay"
)

// update rewrites tests/testdata/all.expected.jsonl from the replay's
// output. Review the diff by hand: the golden file is only as right as the
// person who accepted it (all.want.txt keeps the intent per packet).
var update = flag.Bool("update", false, "rewrite tests/testdata/all.expected.jsonl from the replay output")

const (
	goldenConfig   = "../examples/all.yaml"
	goldenPcap     = "testdata/all.pcap"
	goldenExpected = "testdata/all.expected.jsonl"
	goldenWant     = "testdata/all.want.txt"
)

// replayAll runs `luafw replay --config examples/all.yaml --pcap
// tests/testdata/all.pcap` in-process (the forward path, as the command's
// default), with generous budgets, and returns its stdout and the scripts'
// log lines.
func replayAll(t *testing.T) (out, logs string) {
	t.Helper()
	cfg, err := config.Load(goldenConfig)
	if err != nil {
		t.Fatal(err)
	}
	specs, err := cfg.PluginSpecs()
	if err != nil {
		t.Fatal(err)
	}
	// Budgets are wall-clock time: on a busy machine a 2 ms budget can run
	// out and turn a verdict into the on_error one. This test is about what
	// the plugins decide, not how fast, so give every callback a second
	// (as luafw test does); the output is otherwise luafw replay's.
	for i := range specs {
		specs[i].Budget = time.Second
	}
	var logBuf bytes.Buffer
	clk := &replay.Clock{}
	eng := engine.New(engine.Options{Clock: clk.Now, Logger: slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	defer eng.Close()
	if err := eng.Load(specs); err != nil {
		t.Fatalf("loading %s: %v", goldenConfig, err)
	}
	f, err := os.Open(goldenPcap)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var outBuf bytes.Buffer
	path, err := replay.ParsePath("forward")
	if err != nil {
		t.Fatal(err)
	}
	sum, err := replay.Run(context.Background(), eng, f, replay.Options{Path: path, Clock: clk}, &outBuf)
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	t.Log(sum)
	return outBuf.String(), logBuf.String()
}

func splitLines(s string) []string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// TestReplayGolden replays the capture through every shipped plugin and
// compares the output line by line with the reviewed expectation.
func TestReplayGolden(t *testing.T) {
	out, _ := replayAll(t)
	if *update {
		if err := os.WriteFile(goldenExpected, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s: review the diff before committing it", goldenExpected)
	}
	wantBytes, err := os.ReadFile(goldenExpected)
	if err != nil {
		t.Fatalf("%v (create it with -update, then review it)", err)
	}
	got, want := splitLines(out), splitLines(string(wantBytes))
	notes := readWant(t)
	var diff strings.Builder
	bad := 0
	for i := 0; i < max(len(got), len(want)); i++ {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g == w {
			continue
		}
		bad++
		if bad <= 20 {
			fmt.Fprintf(&diff, "line %d (%s):\n  - want %s\n  + got  %s\n", i+1, notes[i+1].note, orNone(w), orNone(g))
		}
	}
	if bad > 0 {
		if bad > 20 {
			fmt.Fprintf(&diff, "... and %d more lines differ\n", bad-20)
		}
		t.Fatalf("replay output differs from %s in %d of %d lines:\n%s"+
			"if the change is intended, run `go test ./tests -run TestReplayGolden -update` and review the diff",
			goldenExpected, bad, max(len(got), len(want)), diff.String())
	}
}

func orNone(s string) string {
	if s == "" {
		return "(no line)"
	}
	return s
}

type intent struct {
	verdict, by, note string
}

// readWant reads all.want.txt: the verdict and deciding plugin each packet
// should get, written by hand in the generator.
func readWant(t *testing.T) map[int]intent {
	t.Helper()
	f, err := os.Open(goldenWant)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[int]intent{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.SplitN(line, "\t", 4)
		if len(parts) != 4 {
			t.Fatalf("%s: bad line %q", goldenWant, line)
		}
		n, err := strconv.Atoi(parts[0])
		if err != nil {
			t.Fatalf("%s: bad line %q", goldenWant, line)
		}
		m[n] = intent{verdict: parts[1], by: parts[2], note: parts[3]}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestReplayIntent checks the replay against the hand-written intent of
// every packet (verdict and deciding plugin), independently of the golden
// file, and the log lines the plugins must write.
func TestReplayIntent(t *testing.T) {
	out, logs := replayAll(t)
	want := readWant(t)
	lines := splitLines(out)
	if len(lines) != len(want) {
		t.Fatalf("replay gave %d lines, %s has %d packets", len(lines), goldenWant, len(want))
	}
	for i, line := range lines {
		var r replay.Result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		w := want[r.N]
		by := "-"
		if r.By != nil && r.Verdict != "accept" {
			by = *r.By
		}
		if r.Verdict != w.verdict || by != w.by {
			t.Errorf("packet %d (%s): %s by %s, want %s by %s", r.N, w.note, r.Verdict, by, w.verdict, w.by)
		}
		if r.Errors != 0 {
			t.Errorf("packet %d (%s): %d callback errors", r.N, w.note, r.Errors)
		}
	}
	// What the plugins log: counted from the log, one line per event.
	for _, c := range []struct {
		msg  string
		want int
	}{
		{`msg="dns query blocked"`, 4},
		{`msg="tls connection blocked"`, 3},
		{`msg="source banned"`, 2},
		{`msg="port knock completed"`, 2},
	} {
		if n := strings.Count(logs, c.msg); n != c.want {
			t.Errorf("%d log lines %s, want %d", n, c.msg, c.want)
		}
	}
	for _, s := range []string{`qname=ads.example`, `qname=cdn.tracker.example`, `sni=cdn.blocked.example`, `key=2001:db8:66:0::/64`} {
		if !strings.Contains(logs, s) {
			t.Errorf("no log line with %s", s)
		}
	}
	// connlog: one line per new connection that got past the filters.
	if n := strings.Count(logs, "msg=connection "); n < 20 {
		t.Errorf("only %d connlog lines", n)
	}
	if t.Failed() {
		t.Logf("logs:\n%s", logs)
	}
}

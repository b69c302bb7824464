package evasion

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/luafw/luafw/internal/engine"
	"github.com/luafw/luafw/replay"
)

var writeCorpus = flag.String("write", "", "also write the corpus to this pcap file")

// replayCorpus replays cases through the given plugins along the forward
// path, as `luafw replay` does, and returns for each case whether each of
// its packets was accepted.
func replayCorpus(t *testing.T, cases []Case, specs []engine.PluginSpec) [][]bool {
	t.Helper()
	var capture bytes.Buffer
	order, err := WritePcap(&capture, cases)
	if err != nil {
		t.Fatal(err)
	}
	if *writeCorpus != "" {
		if err := os.WriteFile(*writeCorpus, capture.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i := range specs {
		specs[i].Budget = time.Second // verdicts, not speed, are tested
	}
	clk := &replay.Clock{}
	eng := engine.New(engine.Options{Clock: clk.Now, Logger: slog.New(slog.DiscardHandler)})
	defer eng.Close()
	if err := eng.Load(specs); err != nil {
		t.Fatal(err)
	}
	path, _ := replay.ParsePath("forward")
	var out bytes.Buffer
	sum, err := replay.Run(context.Background(), eng, &capture, replay.Options{Path: path, Clock: clk}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Errors != 0 {
		t.Errorf("%d callbacks failed", sum.Errors)
	}
	accepted := make([][]bool, len(cases))
	for i, c := range cases {
		accepted[i] = make([]bool, len(c.Packets))
	}
	sc := bufio.NewScanner(&out)
	for i := 0; sc.Scan(); i++ {
		var r replay.Result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		o := order[i]
		accepted[o[0]][o[1]] = r.Verdict == "accept"
	}
	return accepted
}

// checkCorpus asserts every handled blocked case blocked and every control
// untouched, and logs the counts.
func checkCorpus(t *testing.T, kind string, cases []Case, accepted [][]bool) {
	t.Helper()
	var blocked, blockedOK, controls, controlsOK, gaps int
	for i := range cases {
		c := &cases[i]
		if !c.Blocked {
			controls++
			untouched := true
			for _, a := range accepted[i] {
				untouched = untouched && a
			}
			if untouched {
				controlsOK++
			} else {
				t.Errorf("%s: a control packet was not accepted: %v", c.Label(), accepted[i])
			}
			continue
		}
		evaded := Evaded(c, accepted[i])
		switch {
		case !c.Handled:
			gaps++
			t.Logf("%s: a known gap (evaded: %v)", c.Label(), evaded)
		case evaded:
			blocked++
			t.Errorf("%s: every byte of the message reached the server (accepted %v)", c.Label(), accepted[i])
		default:
			blocked++
			blockedOK++
		}
	}
	msg := fmt.Sprintf("evasion corpus %s: %d/%d blocked cases blocked, %d/%d controls untouched, %d known gaps",
		kind, blockedOK, blocked, controlsOK, controls, gaps)
	t.Log(msg)
	if testing.Verbose() {
		fmt.Println(msg)
	}
}

func TestTLSCorpus(t *testing.T) {
	cases := TLSCases(20000)
	specs := []engine.PluginSpec{{File: "../../plugins/sni.lua", Options: map[string]any{
		"names": []any{"blocked.example"}, "action": "drop", "log": false}}}
	checkCorpus(t, "tls", cases, replayCorpus(t, cases, specs))
}

// TestTLSCorpusHasTeeth: read segment by segment (reassemble = false, the
// plugin's old way), most techniques get through; the corpus can fail.
func TestTLSCorpusHasTeeth(t *testing.T) {
	cases := TLSCases(20000)
	specs := []engine.PluginSpec{{File: "../../plugins/sni.lua", Options: map[string]any{
		"names": []any{"blocked.example"}, "action": "drop", "log": false, "reassemble": false}}}
	accepted := replayCorpus(t, cases, specs)
	evaded := 0
	for i := range cases {
		if cases[i].Blocked && Evaded(&cases[i], accepted[i]) {
			evaded++
		}
	}
	t.Logf("segment by segment, %d blocked cases evade", evaded)
	if evaded < 15 {
		t.Fatalf("only %d cases evade a plugin that reads segments on their own", evaded)
	}
}

// TestCorpusDeterministic: the same bytes on every run.
func TestCorpusDeterministic(t *testing.T) {
	var a, b bytes.Buffer
	if _, err := WritePcap(&a, TLSCases(20000)); err != nil {
		t.Fatal(err)
	}
	if _, err := WritePcap(&b, TLSCases(20000)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) || a.Len() < 10000 {
		t.Fatalf("corpus differs between runs (%d, %d bytes)", a.Len(), b.Len())
	}
}

func TestDNSCorpus(t *testing.T) {
	cases := DNSCases(30000)
	specs := []engine.PluginSpec{{File: "../../plugins/dnsfilter.lua", Options: map[string]any{
		"names": []any{"blocked.example"}, "action": "drop", "log": false}}}
	checkCorpus(t, "dns over tcp", cases, replayCorpus(t, cases, specs))
}

func TestQUICCorpus(t *testing.T) {
	cases := QUICCases(40000)
	specs := []engine.PluginSpec{{File: "../../plugins/sni.lua", Options: map[string]any{
		"names": []any{"blocked.example"}, "action": "drop", "log": false}}}
	checkCorpus(t, "quic", cases, replayCorpus(t, cases, specs))
}

// TestQUICCorpusHasTeeth: with quic = false (the plugin's old way) every
// blocked QUIC case gets through.
func TestQUICCorpusHasTeeth(t *testing.T) {
	cases := QUICCases(40000)
	specs := []engine.PluginSpec{{File: "../../plugins/sni.lua", Options: map[string]any{
		"names": []any{"blocked.example"}, "action": "drop", "log": false, "quic": false}}}
	accepted := replayCorpus(t, cases, specs)
	for i := range cases {
		if cases[i].Blocked && !Evaded(&cases[i], accepted[i]) {
			t.Errorf("%s: blocked without reading QUIC", cases[i].Label())
		}
	}
}

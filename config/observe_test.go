package config

import (
	"strings"
	"testing"
	"time"

	"github.com/luafw/luafw/internal/engine"
)

func TestObserveSections(t *testing.T) {
	in := `plugins: [{file: a.lua}]
events:
  verdicts: [drop, accept]
  file: /var/log/luafw/events.json
  max_size: 10MiB
  keep: 3
  rate: 6000/m
capture: {file: /var/log/luafw/drops.pcapng, max_size: 512KiB, snaplen: 128}
state: {file: /var/lib/luafw/state.json, save_every: 30s}
`
	f, err := Parse([]byte(in), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e := f.Events
	if e.File != "/var/log/luafw/events.json" || e.MaxSize != 10<<20 || KeepOr(e.Keep) != 3 || *e.Rate != 100 {
		t.Fatalf("events: %+v", e)
	}
	m, err := VerdictSet(e.Verdicts)
	if err != nil || !m.Has(engine.Drop) || !m.Has(engine.Accept) || m.Has(engine.Reject) {
		t.Fatalf("verdicts %v: %b %v", e.Verdicts, m, err)
	}
	if c := f.Capture; c.MaxSize != 512<<10 || KeepOr(c.Keep) != DefaultKeep || c.Snaplen != 128 {
		t.Fatalf("capture: %+v", c)
	}
	if s := f.State; s.File != "/var/lib/luafw/state.json" || time.Duration(s.SaveEvery) != 30*time.Second {
		t.Fatalf("state: %+v", s)
	}
	if m, _ := VerdictSet(nil); !m.Has(engine.Drop) || !m.Has(engine.Reject) || m.Has(engine.Accept) {
		t.Fatalf("default verdicts: %b", m)
	}
}

func TestObserveRefused(t *testing.T) {
	const p = "plugins:\n  - file: a.lua\n"
	cases := []struct{ name, in, want string }{
		{"unknown events key", p + "events: {file: x, rotate: 3}\n", `3: unknown key "rotate" in events; allowed: verdicts, file, max_size, keep, rate, burst, queue`},
		{"events without file", p + "events: {verdicts: [drop]}\n", `3: events: want file: (a path, or stdout)`},
		{"bad verdict", p + "events:\n  file: x\n  verdicts: [drop, dropp]\n", `5: events.verdicts: unknown verdict "dropp"`},
		{"bad size", p + "capture: {file: x, max_size: 10 megs}\n", `3: capture.max_size: bad size "10 megs"`},
		{"tiny size", p + "capture: {file: x, max_size: 100}\n", `3: capture.max_size: want at least 4KiB, not 100 bytes`},
		{"bad rate", p + "events: {file: x, rate: fast}\n", `3: events.rate: bad rate "fast"`},
		{"rate without unit", p + "events: {file: x, rate: 100}\n", `3: events.rate: bad rate "100"`},
		{"capture to stdout", p + "capture: {file: stdout}\n", `3: capture: want file: (the pcapng file's path)`},
		{"snaplen", p + "capture: {file: x, snaplen: 10}\n", `3: capture.snaplen: want 40 to 65535 bytes, not 10`},
		{"state without file", p + "state: {save_every: 1m}\n", `3: state.save_every: set state.file (where the state maps are saved) too`},
		{"save_every too short", p + "state:\n  file: s.json\n  save_every: 10ms\n", `5: state.save_every: want at least 1s, not 10ms`},
		{"negative keep", p + "events: {file: x, keep: -1}\n", `3: events.keep: want 0 to 1000 rotated files, not -1`},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.in), "c.yaml")
		if err == nil || !strings.Contains(err.Error(), "c.yaml:"+c.want) {
			t.Errorf("%s: got %v, want c.yaml:%s", c.name, err, c.want)
		}
	}
}

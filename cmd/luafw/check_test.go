package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/luafw/luafw/host/packet"
	"github.com/luafw/luafw/pcap"
)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a.lua", `fw.register{hook="forward", priority="raw", fn=function() end}
fw.register{name="late", hook={"forward","input"}, priority=10, match={proto="tcp", dport=22, ct_state="new"}, fn=function() end}`)
	write(t, dir, "b.lua", `fw.register{hook="forward", fn=function() end}`)
	cfg := write(t, dir, "luafw.yaml", "plugins:\n  - file: a.lua\n  - file: b.lua\n")
	code, out, errs := runCLI("check", cfg)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	// Chains in run order: input, then forward by priority.
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	want := []string{
		"HOOK PRIORITY PLUGIN CALLBACK FILE MATCH",
		"input 10 a late " + filepath.Join(dir, "a.lua") + " proto=tcp dport=22 ct_state=new",
		"forward -300 a a " + filepath.Join(dir, "a.lua") + " -",
		"forward 0 b b " + filepath.Join(dir, "b.lua") + " -",
		"forward 10 a late " + filepath.Join(dir, "a.lua") + " proto=tcp dport=22 ct_state=new",
		"ok: 2 plugins, 4 callbacks",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("check output:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	// A single Lua file works too.
	if code, _, errs := runCLI("check", filepath.Join(dir, "b.lua")); code != 0 {
		t.Fatalf("check FILE.lua: exit %d: %s", code, errs)
	}
}

func TestCheckErrors(t *testing.T) {
	dir := t.TempDir()
	bad := write(t, dir, "bad.lua", "fw.register{hook='input', fn=function()\n  return fw.DROP\n  end end}\n")
	code, _, errs := runCLI("check", bad)
	if code != 1 || !strings.Contains(errs, bad+":3: ") {
		t.Fatalf("exit %d, stderr %q: want 1 and %s:3", code, errs, bad)
	}
	cfg := write(t, dir, "c.yaml", "plugins:\n  - file: a.lua\n    on_eror: drop\n")
	if code, _, errs := runCLI("check", cfg); code != 1 || !strings.Contains(errs, "on_eror") {
		t.Fatalf("config typo: exit %d, %q", code, errs)
	}
	if code, _, _ := runCLI("check"); code != 2 {
		t.Fatalf("no argument: exit %d, want 2", code)
	}
	if code, _, _ := runCLI("nosuch"); code != 2 {
		t.Fatalf("unknown command: exit %d, want 2", code)
	}
}

func TestReplayCommand(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "p.lua", `fw.register{hook="forward", fn=function(pkt) if pkt.dport == 23 then return fw.DROP end end}`)
	cfg := write(t, dir, "luafw.yaml", "plugins:\n  - file: p.lua\n")
	var buf bytes.Buffer
	w, _ := pcap.NewWriter(&buf, pcap.LinkTypeRaw)
	for _, port := range []uint16{22, 23} {
		b, _ := packet.Build(packet.Spec{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"),
			Proto: packet.ProtoTCP, SrcPort: 1000, DstPort: port, TCPFlags: packet.TCPSyn})
		w.WritePacket(time.Unix(1700000000, 0), b)
	}
	capFile := write(t, dir, "x.pcap", buf.String())
	code, out, errs := runCLI("replay", "--config", cfg, "--pcap", capFile)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines: %s", len(lines), out)
	}
	var second map[string]any
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
		t.Fatal(err)
	}
	if second["n"] != 2.0 || second["verdict"] != "drop" || second["by"] != "p" || second["hook"] != "forward" {
		t.Fatalf("second line %v", second)
	}
	if !strings.Contains(errs, "2 packets (accept 1, drop 1)") {
		t.Fatalf("summary on stderr: %q", errs)
	}
	if code, _, _ := runCLI("replay", "--config", cfg, "--pcap", capFile, "--path", "sideways"); code != 2 {
		t.Fatalf("bad path: exit %d", code)
	}
}

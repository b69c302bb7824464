package daemon

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/luafw/luafw/host/packet"
	"github.com/luafw/luafw/internal/engine"
)

// When the rules of a reload cannot be installed, the plugins that ran
// before come back: their compiled code, although the file on disk now
// holds the new text. (The failure is forced with a divert filter no
// packet can match, which the rule builder refuses before any kernel call,
// so this needs no root.)
func TestFailedInstallRestoresTheCodeThatRan(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("luafw.yaml", "plugins:\n  - file: p.lua\n")
	write("p.lua", `fw.register{hook="forward", fn=function(pkt) if pkt.dport == 23 then return fw.DROP end end}`)
	d, err := New(Options{ConfigPath: filepath.Join(dir, "luafw.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	defer d.eng.Close()
	// Stand-ins for the running queue readers, so the reload starts none.
	for _, seg := range d.plan {
		d.runners[seg.Key()] = &segRunner{d: d, key: seg.Key()}
	}
	pkt, err := packet.Build(packet.Spec{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"),
		Proto: packet.ProtoTCP, SrcPort: 1000, DstPort: 23})
	if err != nil {
		t.Fatal(err)
	}
	verdict := func() engine.Verdict { return d.eng.Process(&engine.Packet{Hook: engine.Forward, Data: pkt}).Verdict }
	if v := verdict(); v != engine.Drop {
		t.Fatalf("before the reload: %v, want drop", v)
	}

	write("p.lua", `fw.register{hook="forward", fn=function(pkt) return fw.ACCEPT end}`)
	write("luafw.yaml", "plugins:\n  - file: p.lua\ndivert:\n  forward: {src: [10.0.0.0/8], dst: ['fd00::/8']}\n")
	err = d.Reload()
	if err == nil || !strings.Contains(err.Error(), "installing rules") {
		t.Fatalf("Reload: %v, want a rule install failure", err)
	}
	if v := verdict(); v != engine.Drop {
		t.Errorf("after the failed reload: %v, want drop (the old code)", v)
	}
	if d.failed.Load() != 1 || d.reloads.Load() != 0 {
		t.Errorf("reload counters: %d failed, %d ok", d.failed.Load(), d.reloads.Load())
	}
	if len(d.blocks) != len(d.plan) {
		t.Errorf("queue blocks %v for plan %v", d.blocks, d.plan)
	}
}

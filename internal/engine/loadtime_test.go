package engine

import (
	"os"
	"path/filepath"
	"testing"
)

// Functions that build sets from lists or read files are refused inside
// callbacks, with an error naming the function; net.cidr (one entry) and
// the lookups are not.
func TestLoadTimeOnlyFunctions(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "l.txt"), []byte("10.0.0.0/8\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	calls := map[string]string{
		"net.set":     `net.set{"10.0.0.0/8"}`,
		"net.domains": `net.domains{"example.com"}`,
		"net.load":    `net.load("l.txt")`,
		"fw.register": `fw.register{hook="input", fn=function() end}`,
		"fw.keys":     `fw.keys{[22] = true}`,
	}
	for fn, call := range calls {
		t.Run(fn, func(t *testing.T) {
			file := filepath.Join(dir, "p.lua")
			code := `local before = ` + "(function() return " + call + " end)()" + `
fw.register{hook="input", fn=function(pkt)
	local ok, err = pcall(function() return ` + call + ` end)
	if ok then return fw.ACCEPT end
	if err:find("` + fn + ` can only be called while the plugin loads (at its top level)", 1, true) then return fw.DROP end
	error(err)
end}`
			if err := os.WriteFile(file, []byte(code), 0o644); err != nil {
				t.Fatal(err)
			}
			e, _ := newTestEngine(t)
			mustLoad(t, e, PluginSpec{File: file})
			d := e.Process(&Packet{Hook: Input, Data: tcpPkt(t, "10.1.1.1", "10.0.0.2", 1, 2, 0)})
			if d.Verdict != Drop || d.Errors != 0 {
				t.Fatalf("%s in a callback: verdict %v errors %d, want drop (refused with the function's name)", fn, d.Verdict, d.Errors)
			}
		})
	}
	e, _ := newTestEngine(t)
	mustLoad(t, e, src("runtime", `local s = net.set{"10.0.0.0/8"}; local d = net.domains{"example.com"}
fw.register{hook="input", fn=function(pkt)
	if net.cidr("10.0.0.0/8"):contains(pkt.src) and s:contains(pkt.src) and d:match("a.example.com") then return fw.DROP end
end}`))
	if d := e.Process(&Packet{Hook: Input, Data: tcpPkt(t, "10.1.1.1", "10.0.0.2", 1, 2, 0)}); d.Verdict != Drop || d.Errors != 0 {
		t.Fatalf("net.cidr and lookups in a callback: verdict %v errors %d, want drop", d.Verdict, d.Errors)
	}
}

// fw.keys sorts numbers first, in numeric order, then strings.
func TestFwKeysOrder(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e, src("keys", `local k = fw.keys{[443] = true, [80] = true, b = 1, [8080] = true, a = 2}
local want = {80, 443, 8080, "a", "b"}
for i = 1, #want do assert(k[i] == want[i], "key " .. i .. ": " .. tostring(k[i])) end
assert(#k == 5)
fw.register{hook="input", fn=function() return fw.DROP end}`))
	if d := e.Process(&Packet{Hook: Input, Data: tcpPkt(t, "10.1.1.1", "10.0.0.2", 1, 2, 0)}); d.Verdict != Drop {
		t.Fatalf("verdict %v, want drop", d.Verdict)
	}
}

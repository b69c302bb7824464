package main

import (
	"strings"
	"testing"
)

// TestCheckRefusesConfigs: luafw check exits 1 and names the
// configuration's file:line and the key, for each kind of bad setting.
func TestCheckRefusesConfigs(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a.lua", `fw.register{hook="forward", fn=function() end}`)
	// Three segments: before conntrack, after it, and after filter.
	write(t, dir, "three.lua", `fw.register{hook="forward", priority="raw", fn=function() end}
fw.register{name="b", hook="forward", priority="mangle", fn=function() end}
fw.register{name="c", hook="forward", priority=10, fn=function() end}`)
	cases := []struct{ name, cfg, want string }{
		{"empty file", "", `:1: the configuration is empty`},
		{"null plugin entry", "plugins:\n  -\n", `:2: plugin entry 1 is empty (a lone '-')`},
		{"unknown key", "plugins:\n  - file: a.lua\n    optoins: {}\n", `:3: unknown key "optoins" in plugin entry; allowed: file, name, options,`},
		{"missing plugin file", "plugins:\n  - file: a.lua\n  - file: nope.lua\n", `:3: file: plugin nope.lua does not exist`},
		{"duplicate plugin", "plugins:\n  - file: a.lua\n  - file: ./a.lua\n", `:3: plugin name "a" is taken by the plugin at line 2`},
		{"budget 0", "plugins:\n  - file: a.lua\nbudget: 0s\n", `:3: budget: want a positive duration`},
		{"plugin budget negative", "plugins:\n  - file: a.lua\n    budget: -1ms\n", `:3: budget: want a positive duration`},
		{"balance 0", "plugins:\n  - file: a.lua\nqueue: {balance: 0}\n", `:3: queue.balance: want at least 1`},
		{"balance 100000", "plugins:\n  - file: a.lua\nqueue: {balance: 100000}\n", `:3: queue.balance: 100000 queues (sockets and worker threads) per diversion is more than 256`},
		{"queues past 65535", "plugins:\n  - file: a.lua\nqueue: {base: 65000, balance: 200}\n", `:3: queue: 1 diversion(s) × balance 200`},
		// One block fits, three do not: only the loaded chains tell.
		{"queues of three segments", "plugins:\n  - file: three.lua\nqueue:\n  base: 65500\n  balance: 4\n",
			`:5: queue: 3 diversion(s) × balance 4 × 5 conntrack state queue(s), from queue.base 65500, need queues up to 65559, beyond 65535`},
		{"skip equals reject", "plugins:\n  - file: a.lua\nmarks: {skip: 0x4, reject: 0x4}\n", `:3: marks.skip 0x4 and marks.reject 0x4 share bits 0x4`},
		{"offload overlaps", "plugins:\n  - file: a.lua\noffload: {mask: 0xc0000000}\n", `:3: offload.mask 0xc0000000 overlaps luafw's reserved mark bits`},
		{"quarantine_for negative", "plugins:\n  - file: a.lua\n    quarantine_for: -1s\n", `:3: quarantine_for: want a positive duration`},
		{"bad fail", "plugins:\n  - file: a.lua\nfail: shut\n", `:3: fail: want open or closed, not "shut"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := write(t, dir, "c.yaml", c.cfg)
			code, _, errs := runCLI("check", cfg)
			if code != 1 || !strings.Contains(errs, cfg+c.want) {
				t.Errorf("exit %d, stderr %q\nwant exit 1 and %s%s", code, errs, cfg, c.want)
			}
		})
	}
	// The same queue settings with one segment pass.
	cfg := write(t, dir, "ok.yaml", "plugins:\n  - file: a.lua\nqueue:\n  base: 65500\n  balance: 4\n")
	if code, _, errs := runCLI("check", cfg); code != 0 {
		t.Errorf("one segment: exit %d: %s", code, errs)
	}
	// run refuses the same way, before touching the kernel.
	bad := write(t, dir, "bad.yaml", "plugins:\n  - file: a.lua\nqueue: {balance: 0}\n")
	if code, _, errs := runCLI("run", "--dry-run", "--pidfile", "", "--config", bad); code != 1 || !strings.Contains(errs, bad+":3: queue.balance") {
		t.Errorf("run: exit %d, stderr %q", code, errs)
	}
}

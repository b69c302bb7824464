package config

import (
	"strings"
	"testing"
)

// TestRefused: each configuration is refused with the file, the line of the
// offending key and a message in the configuration's own words.
func TestRefused(t *testing.T) {
	const p = "plugins:\n  - file: a.lua\n" // a valid plugin list, lines 1-2
	cases := []struct{ name, in, want string }{
		// Shape: keys, types, empty entries.
		{"unknown plugin key", "plugins:\n  - file: a.lua\n    optoins: {x: 1}\n",
			`3: unknown key "optoins" in plugin entry; allowed: file, name, options, on_error, budget, quarantine_after, quarantine_for, memory, disabled, allow_dirs`},
		{"unknown top key", p + "budgets: 2ms\n", `3: unknown key "budgets" in the top level; allowed: plugins, queue, divert, conntrack, marks, offload, inject, log, metrics, table, budget, packet_budget, fail, events, capture, state, allow_dirs, plugin_memory, memory_limit, memory_check, state_limits`},
		{"syntax", p + "queue:\n\tbalance: 2\n", `4: YAML syntax: found character that cannot start any token`},
		{"unknown key through a merge", "defaults: &d {budget: 1ms, bugdet: 2ms}\nplugins:\n  - {<<: *d, file: a.lua}\n", `1: unknown key "defaults" in the top level; allowed: plugins, queue, divert, conntrack, marks, offload, inject, log, metrics, table, budget, packet_budget, fail, events, capture, state, allow_dirs, plugin_memory, memory_limit, memory_check, state_limits`},
		{"unknown key in merged map", "plugins:\n  - &a {file: a.lua, on_error: drop}\n  - {<<: {bugdet: 2ms}, file: b.lua}\n", `3: unknown key "bugdet" in plugin entry; allowed: file, name, options, on_error, budget, quarantine_after, quarantine_for, memory, disabled, allow_dirs`},
		{"unknown queue key", p + "queue:\n  balanc: 2\n", `4: unknown key "balanc" in queue; allowed: base, balance, max_len, fail_open, gso, burst`},
		{"unknown divert key", p + "divert:\n  forward: {port: [22]}\n", `4: unknown key "port" in divert.forward; allowed: protos, dports, sports, in, out, src, dst`},
		{"key twice", p + "budget: 1ms\nbudget: 2ms\n", `4: key "budget" given twice in the top level (lines 3 and 4)`},
		{"null plugin", "plugins:\n  -\n", `2: plugin entry 1 is empty (a lone '-'); remove it or give it keys`},
		{"null plugin after one", p + "  -\n", `3: plugin entry 2 is empty (a lone '-'); remove it or give it keys`},
		{"no plugins", "plugins:\n", `1: plugins: no plugin listed; a configuration needs at least one (plugins: [{file: x.lua}])`},
		{"no plugins key", "budget: 2ms\n", `1: plugins: no plugin listed; a configuration needs at least one (plugins: [{file: x.lua}])`},
		{"plugins not a list", "plugins: a.lua\n", `1: plugins: want a list ([a, b] or lines starting with '-'), not "a.lua"`},
		{"top not a mapping", "- file: a.lua\n", `1: the top level: want keys and values (key: value), not a list`},
		{"balance not a number", p + "queue: {balance: two}\n", `3: queue.balance: want a whole number, not "two"`},
		{"base too big", p + "queue: {base: 70000}\n", `3: queue.base: want a whole number from 0 to 65535, not "70000"`},
		{"max_len negative", p + "queue: {max_len: -1}\n", `3: queue.max_len: want a whole number from 0 to 4294967295, not "-1"`},
		{"gso not bool", p + "queue: {gso: yes please}\n", `3: queue.gso: want true or false, not "yes please"`},
		{"bad duration", p + "budget: soon\n", `3: budget: bad duration "soon" (want e.g. 2ms, 1s)`},
		{"bad mark", p + "marks: {skip: 0x1ffffffff}\n", `3: marks.skip: bad 32-bit value "0x1ffffffff" (want e.g. 0x100 or 256)`},
		{"options not a mapping", "plugins:\n  - file: a.lua\n    options: [1, 2]\n", `3: plugins[0].options: want keys and values, not a list`},
		// Plugins.
		{"plugin without file", "plugins:\n  - name: x\n", `2: plugin entry 1 has no file: (the Lua file to load)`},
		{"bad on_error", p + "  - file: b.lua\n    on_error: maybe\n", `4: on_error: want accept, drop or reject, not "maybe"`},
		{"on_error stop", "plugins:\n  - file: a.lua\n    on_error: stop\n", `3: on_error: want accept, drop or reject, not "stop"`},
		{"plugin budget 0", "plugins:\n  - file: a.lua\n    budget: 0s\n", `3: budget: want a positive duration such as 2ms (default 2ms), not 0s`},
		{"plugin budget negative", "plugins:\n  - file: a.lua\n    budget: -1ms\n", `3: budget: want a positive duration such as 2ms (default 2ms), not -1ms`},
		{"plugin budget too long", "plugins:\n  - file: a.lua\n    budget: 5s\n", `3: budget: 5s is more than 1s; a packet (and its queue) waits that long for each callback`},
		{"budget 0", p + "budget: 0s\n", `3: budget: want a positive duration such as 2ms (default 2ms), not 0s`},
		{"budget negative", p + "budget: -2ms\n", `3: budget: want a positive duration such as 2ms (default 2ms), not -2ms`},
		{"quarantine_after negative", "plugins:\n  - file: a.lua\n    quarantine_after: -1\n", `3: quarantine_after: want at least 1 consecutive failure (default 100), not -1`},
		{"quarantine_after 0", "plugins:\n  - file: a.lua\n    quarantine_after: 0\n", `3: quarantine_after: want at least 1 consecutive failure (default 100), not 0`},
		{"quarantine_for negative", "plugins:\n  - file: a.lua\n    quarantine_for: -5s\n", `3: quarantine_for: want a positive duration (default 1m0s), not -5s`},
		{"duplicate names", p + "  - file: lib/a.lua\n", `3: plugin name "a" is taken by the plugin at line 2; give one of them another name: key`},
		{"duplicate explicit names", "plugins:\n  - {file: a.lua, name: x}\n  - {file: b.lua, name: x}\n", `3: plugin name "x" is taken by the plugin at line 2; give one of them another name: key`},
		// Queues.
		{"balance 0", p + "queue:\n  balance: 0\n", `4: queue.balance: want at least 1 queue per diversion (default 1), not 0`},
		{"balance negative", p + "queue: {balance: -3}\n", `3: queue.balance: want at least 1 queue per diversion (default 1), not -3`},
		{"balance 100000", p + "queue:\n  balance: 100000\n", `4: queue.balance: 100000 queues (sockets and worker threads) per diversion is more than 256; want about one per core`},
		{"balance past the top", p + "queue:\n  base: 65000\n  balance: 200\n", `5: queue: 1 diversion(s) × balance 200 × 5 conntrack state queue(s), from queue.base 65000, need queues up to 65999, beyond 65535; lower queue.base or queue.balance`},
		{"base near the top", p + "conntrack: false\nqueue:\n  base: 65535\n  balance: 2\n", `6: queue: 1 diversion(s) × balance 2 × 1 conntrack state queue(s), from queue.base 65535, need queues up to 65536, beyond 65535; lower queue.base or queue.balance`},
		{"base near the top, default balance", p + "queue:\n  base: 65533\n", `4: queue: 1 diversion(s) × balance 1 × 5 conntrack state queue(s), from queue.base 65533, need queues up to 65537, beyond 65535; lower queue.base or queue.balance`},
		{"base 0", p + "queue: {base: 0}\n", `3: queue.base: want a queue number from 1 to 65535 (default 1000), not 0`},
		{"max_len 0", p + "queue: {max_len: 0}\n", `3: queue.max_len: want at least 1 packet, not 0`},
		{"burst 0", p + "queue: {burst: 0}\n", `3: queue.burst: want 1 to 1024 packets per receive, not 0`},
		{"burst negative", p + "queue: {burst: -4}\n", `3: queue.burst: want 1 to 1024 packets per receive, not -4`},
		{"burst too big", p + "queue: {burst: 5000}\n", `3: queue.burst: want 1 to 1024 packets per receive, not 5000`},
		// Marks.
		{"skip equals reject", p + "marks:\n  skip: 0x100\n  reject: 0x100\n", `5: marks.skip 0x100 and marks.reject 0x100 share bits 0x100; each needs bits of its own`},
		{"skip overlaps default reject", p + "marks:\n  skip: 0x40000001\n", `4: marks.skip 0x40000001 and marks.reject 0x40000000 share bits 0x40000000; each needs bits of its own`},
		{"skip 0", p + "marks: {skip: 0}\n", `3: marks.skip: want at least one bit (default 0x80000000), not 0`},
		{"reject 0", p + "marks: {reject: 0}\n", `3: marks.reject: want at least one bit (default 0x40000000), not 0`},
		{"offload overlaps skip", p + "offload:\n  mask: 0x80000100\n", `4: offload.mask 0x80000100 overlaps luafw's reserved mark bits 0x80000000 (marks.skip 0x80000000, marks.reject 0x40000000); pick other bits`},
		{"offload overlaps own reject", p + "marks: {reject: 0x10}\noffload: {mask: 0x30}\n", `4: offload.mask 0x30 overlaps luafw's reserved mark bits 0x10 (marks.skip 0x80000000, marks.reject 0x10); pick other bits`},
		{"inject overlaps skip", p + "marks: {inject: 0x80000000}\n", `3: marks.inject 0x80000000: want bits of its own, apart from marks.skip 0x80000000 and marks.reject 0x40000000`},
		{"tags overlap skip", p + "marks: {tags: 0x80000001}\n", `3: marks.tags 0x80000001 overlaps marks.skip 0x80000000, marks.reject 0x40000000, marks.inject 0x20000000 or offload.mask 0x0; pick other bits`},
		{"inject 0", p + "marks: {inject: 0}\n", `3: marks.inject 0x0: want bits of its own, apart from marks.skip 0x80000000 and marks.reject 0x40000000`},
		{"inject rate negative", p + "inject: {rate: -1}\n", `3: inject: rate and burst must not be negative`},
		// Divert.
		{"unknown hook", p + "divert:\n  sideways: {}\n", `4: divert: unknown hook "sideways"; want one of prerouting, input, forward, output, postrouting`},
		{"ingress hook", p + "divert:\n  ingress: {}\n", `4: divert: hook "ingress" is a netdev hook: NFQUEUE cannot queue packets from it; use nftables netdev rules and sets (or tc/XDP) there, or hook "prerouting" at priority "raw" (docs/design.md, "Ingress and egress")`},
		{"bad prefix", p + "divert:\n  forward:\n    src: [10.0.0.0/33]\n", `5: divert.forward.src: bad prefix "10.0.0.0/33" (want an address or a prefix such as 10.0.0.0/8)`},
		{"bad address", p + "divert:\n  forward:\n    dst:\n      - 10.0.0.300\n", `6: divert.forward.dst: bad address "10.0.0.300" (want an address or a prefix such as 10.0.0.0/8)`},
		{"host bits", p + "divert:\n  forward: {src: [10.1.2.3/8]}\n", `4: divert.forward.src: "10.1.2.3/8" has bits set past its prefix length; did you mean 10.0.0.0/8?`},
		{"unknown proto", p + "divert:\n  forward: {protos: [tcpp]}\n", `4: divert.forward.protos: unknown protocol "tcpp"`},
		{"port 0", p + "divert:\n  forward:\n    dports: [22, 0]\n", `5: divert.forward.dports: port 0 matches no packet; want 1 to 65535`},
		{"port too big", p + "divert:\n  forward: {sports: [70000]}\n", `4: divert.forward.sports[0]: want a whole number from 0 to 65535, not "70000"`},
		{"ports without ports", p + "divert:\n  forward: {protos: [icmp], dports: [22]}\n", `4: divert.forward.dports: protocol 1 in divert.forward.protos has no ports`},
		{"empty interface", p + "divert:\n  forward: {in: [\"\"]}\n", `4: divert.forward.in: empty interface name`},
		{"long interface", p + "divert:\n  forward: {out: [abcdefghijklmnop]}\n", `4: divert.forward.out: interface name "abcdefghijklmnop" is longer than 15 characters`},
		{"star inside", p + "divert:\n  forward: {in: [\"et*h\"]}\n", `4: divert.forward.in: interface name "et*h": '*' may only end a name, and '/' or spaces never appear`},
		// The rest.
		{"log format", p + "log: {format: xml}\n", `3: log.format: want text or json, not "xml"`},
		{"log level", p + "log:\n  level: loud\n", `4: log.level: want debug, info, warn or error, not "loud"`},
		{"fail", p + "fail: ajar\n", `3: fail: want open or closed, not "ajar"`},
		{"table", p + "table: 1fw\n", `3: table: table name "1fw": want a letter then up to 31 letters, digits, '_' or '-'`},
		{"metrics", p + "metrics: localhost\n", `3: metrics: want host:port such as 127.0.0.1:9153, not "localhost"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.in), "x.yaml")
			if err == nil {
				t.Fatalf("accepted:\n%s", c.in)
			}
			if want := "x.yaml:" + c.want; err.Error() != want {
				t.Errorf("error\n  %s\nwant\n  %s", err, want)
			}
			if strings.Contains(err.Error(), "config.") || strings.Contains(err.Error(), "uint") {
				t.Errorf("error names a Go type: %s", err)
			}
		})
	}
}

// TestAccepted: the edges of what is allowed load.
func TestAccepted(t *testing.T) {
	for _, in := range []string{
		"plugins:\n  - file: a.lua\n    budget: 1s\n    quarantine_after: 1\n    quarantine_for: 1ms\n",
		"plugins: [{file: a.lua}]\nqueue: {base: 65531, balance: 1}\n",
		"plugins: [{file: a.lua}]\nconntrack: false\nqueue: {base: 65535}\n",
		"plugins: [{file: a.lua}, {file: a.lua, disabled: true}]\n",
		"plugins: [{file: a.lua}]\nmarks: {skip: 0x1, reject: 0x2}\noffload: {mask: 0x4}\nmetrics: \"[::1]:0\"\n",
		"plugins:\n  - &a {file: a.lua, on_error: drop, budget: 3ms}\n  - {<<: *a, file: b.lua}\n",
		"plugins: [{file: a.lua}]\ndivert:\n  forward: {in: [\"veth*\"], src: [\"2001:DB8::/32\"], dports: [1, 65535]}\n",
	} {
		if _, err := Parse([]byte(in), "x.yaml"); err != nil {
			t.Errorf("%q: %v", in, err)
		}
	}
}

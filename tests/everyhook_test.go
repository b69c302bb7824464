package tests

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/luafw/luafw/tests/lab"
)

// perHook sets, on its hook, for TCP to the given ports: a packet mark, a
// conntrack mark on new connections, REJECT, and REPEAT.
const perHook = `
local o = fw.options
fw.register{hook = o.hook, fn = function(pkt)
	if pkt.proto ~= "tcp" then return end
	if pkt.dport == o.mark_port then pkt:set_mark(o.mark) end
	if pkt.dport == o.ct_port and pkt.ct.state == "new" then pkt.ct:set_mark(o.mark) end
	if pkt.dport == o.reject_port then return fw.REJECT end
	if pkt.dport == o.repeat_port then return fw.REPEAT end
end}`

// TestEveryHook: on each of the five hooks, a packet mark set by a plugin
// reaches the kernel (a counting rule after luafw sees it), a conntrack mark
// set on a new connection's first packet is in the conntrack table, REJECT
// refuses at once (in postrouting, where the kernel cannot reject, it
// drops), and REPEAT lets the connection through without looping.
func TestEveryHook(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 120*time.Second)
	type hookCase struct {
		hook     string
		from, to *lab.NS
		base     uint16 // ports base+1..base+4: mark, ct, reject, repeat
		mark     uint32
	}
	cases := []hookCase{
		{"prerouting", l.Client, l.Server, 3100, 0x41},
		{"input", l.Client, l.Router, 3200, 0x42},
		{"forward", l.Client, l.Server, 3300, 0x43},
		{"output", l.Router, l.Server, 3400, 0x44},
		{"postrouting", l.Client, l.Server, 3500, 0x45},
	}
	cfg := "plugins:\n"
	// Counting chains after luafw (priority 500) on every hook.
	count := "nft add table inet count\n"
	for _, c := range cases {
		cfg += fmt.Sprintf("  - {file: perhook.lua, name: %s, options: {hook: %s, mark: %d, mark_port: %d, ct_port: %d, reject_port: %d, repeat_port: %d}}\n",
			c.hook, c.hook, c.mark, c.base+1, c.base+2, c.base+3, c.base+4)
		count += fmt.Sprintf("nft add chain inet count %s '{ type filter hook %s priority 500; }'\n", c.hook, c.hook)
		count += fmt.Sprintf("nft add rule inet count %s tcp dport %d meta mark %#x counter\n", c.hook, c.base+1, c.mark)
	}
	if _, err := l.Router.Shell(ctx, count); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, l.Router, map[string]string{"luafw.yaml": cfg, "perhook.lua": perHook})
	for _, c := range cases {
		ports := []uint16{c.base + 1, c.base + 2, c.base + 3, c.base + 4}
		serveTCP(t, c.to, ports...)
	}
	for _, c := range cases {
		t.Run(c.hook, func(t *testing.T) {
			dst := c.to.Addr4
			if c.to == l.Router {
				dst = routerAddr(l)
			}
			// packet mark
			if res := connect(ctx, c.from, dst, c.base+1, 2*time.Second); res.Outcome != lab.Connected {
				t.Fatalf("mark port: %v", res)
			}
			if n, _, err := l.Router.NftCounter(ctx, "inet", "count", c.hook, fmt.Sprintf("dport %d", c.base+1)); err != nil || n == 0 {
				t.Errorf("the kernel saw mark %#x on %d packets (%v)", c.mark, n, err)
			}
			// conntrack mark on the first packet of a new connection
			conn, err := c.from.Dial(ctx, "tcp", netip.AddrPortFrom(dst, c.base+2).String())
			if err != nil {
				t.Fatalf("ct port: %v", err)
			}
			conn.SetDeadline(time.Now().Add(2 * time.Second))
			conn.Write([]byte("x\n"))
			conn.Read(make([]byte, 2))
			var got uint32
			deadline := time.Now().Add(2 * time.Second)
			for time.Now().Before(deadline) && got != c.mark {
				entries, err := l.Router.Conntrack(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range entries {
					if e.Proto == 6 && e.DPort == c.base+2 {
						got = e.Mark
					}
				}
				time.Sleep(20 * time.Millisecond)
			}
			conn.Close()
			if got != c.mark {
				t.Errorf("conntrack mark %#x, want %#x", got, c.mark)
			}
			// REJECT
			res := connect(ctx, c.from, dst, c.base+3, 3*time.Second)
			if c.hook == "postrouting" {
				if res.Outcome != lab.TimedOut {
					t.Errorf("reject in postrouting: %v, want dropped (the kernel cannot reject there)", res)
				}
			} else if res.Outcome != lab.Refused {
				t.Errorf("reject: %v after %v, want refused (a reset or unreachable, not a timeout)", res.Outcome, res.Elapsed)
			}
			// REPEAT
			if res := connect(ctx, c.from, dst, c.base+4, 3*time.Second); res.Outcome != lab.Connected {
				t.Errorf("repeat: %v, want connected", res)
			}
		})
	}
	out, _ := l.Router.Run(ctx, "cat", "/proc/net/netfilter/nfnetlink_queue")
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[2] != "0" {
			t.Errorf("queue %s holds %s packets without a verdict", f[0], f[2])
		}
	}
}

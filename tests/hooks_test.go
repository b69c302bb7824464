package tests

import (
	"fmt"
	"testing"
	"time"

	"github.com/luafw/luafw/tests/lab"
)

// dropPort drops TCP to fw.options.port at fw.options.hook.
const dropPort = `
fw.register{hook = fw.options.hook, fn = function(pkt)
	if pkt.proto == "tcp" and pkt.dport == fw.options.port then return fw.DROP end
end}`

// TestDropOnEveryHook: on each hook a plugin drops TCP to one port while
// another port connects, on the real kernel path.
func TestDropOnEveryHook(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 60*time.Second)
	cfg := "plugins:\n"
	ports := map[string]uint16{"prerouting": 2001, "forward": 2002, "postrouting": 2003, "input": 2004, "output": 2005}
	for _, hook := range []string{"prerouting", "forward", "postrouting", "input", "output"} {
		cfg += fmt.Sprintf("  - {file: drop.lua, name: drop-%s, options: {hook: %s, port: %d}}\n", hook, hook, ports[hook])
	}
	startDaemon(t, l.Router, map[string]string{"luafw.yaml": cfg, "drop.lua": dropPort})
	serveTCP(t, l.Server, 2001, 2002, 2003, 2005, 8080)
	serveTCP(t, l.Router, 2004, 8080)

	type probe struct {
		name string
		from *lab.NS
		to   *lab.NS
		port uint16
		want lab.Outcome
	}
	probes := []probe{
		{"prerouting drops its port", l.Client, l.Server, 2001, lab.TimedOut},
		{"forward drops its port", l.Client, l.Server, 2002, lab.TimedOut},
		{"postrouting drops its port", l.Client, l.Server, 2003, lab.TimedOut},
		{"input drops its port", l.Client, l.Router, 2004, lab.TimedOut},
		{"output drops its port", l.Router, l.Server, 2005, lab.TimedOut},
		{"forwarded traffic to another port passes", l.Client, l.Server, 8080, lab.Connected},
		{"input to another port passes", l.Client, l.Router, 8080, lab.Connected},
		{"output to another port passes", l.Router, l.Server, 8080, lab.Connected},
	}
	for _, p := range probes {
		addr := p.to.Addr4
		if p.to == l.Router {
			addr = l.Router.Ifaces[0].Addr4.Addr()
		}
		res := connect(ctx, p.from, addr, p.port, 1500*time.Millisecond)
		if res.Outcome != p.want {
			t.Errorf("%s (%s -> %s:%d): %v, want %v", p.name, p.from.Role, p.to.Role, p.port, res, p.want)
		}
	}
}

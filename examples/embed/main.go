// Command embed shows luafw's engine inside a Go program: it loads a Lua
// plugin, registers a native Go callback in the same ordered chain, gives
// scripts a Lua module of its own, and runs packets it built itself through
// the chain — no kernel, no root.
package main

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"

	lua "github.com/luafw/luafw/lua"

	"github.com/luafw/luafw/host"
	"github.com/luafw/luafw/host/packet"
)

// guard is the Lua plugin: it asks the program's own "inventory" module
// whether a destination is a known server, and drops everything else to
// port 22.
const guard = `
fw.register{name = "ssh-to-servers-only", hook = "forward", fn = function(pkt)
  if pkt.proto == "tcp" and pkt.dport == 22 and not inventory.is_server(pkt.dst) then
    log.info("ssh to a non-server", {dst = pkt.dst})
    return fw.DROP
  end
end}`

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "embed:", err)
		os.Exit(1)
	}
}

func run(out io.Writer) error {
	servers := map[string]bool{"10.0.2.10": true}
	inventory := host.Module{Name: "inventory", Open: func(L *lua.LState) lua.LValue {
		t := L.NewTable()
		t.RawSetString("is_server", L.NewFunction(func(L *lua.LState) int {
			L.Push(lua.LBool(servers[L.CheckString(1)]))
			return 1
		}))
		return t
	}}
	eng := host.New(host.Options{Modules: []host.Module{inventory}, Logger: slog.New(slog.NewTextHandler(out, nil))})
	defer eng.Close()

	// A native callback before the Lua one (mangle runs before filter):
	// traffic from the management network is accepted at once.
	mgmt := netip.MustParsePrefix("10.0.9.0/24")
	if err := eng.Register(host.Forward, host.PriorityMangle, "mgmt-allow", func(c *host.Ctx) host.Verdict {
		if mgmt.Contains(c.Parsed().Src) {
			c.Tag("mgmt")
			return host.Stop
		}
		return host.Accept
	}); err != nil {
		return err
	}
	if err := eng.Load([]host.PluginSpec{{Name: "guard", File: "guard.lua", Source: []byte(guard)}}); err != nil {
		return err
	}
	for _, c := range eng.Chains() {
		fmt.Fprintf(out, "chain %s: priority %d %s/%s\n", c.Hook, c.Priority, c.Plugin, c.Name)
	}

	w := eng.NewWorker()
	defer w.Close()
	for _, p := range []struct{ src, dst string }{
		{"10.0.1.5", "10.0.2.10"}, // ssh to a server: passes
		{"10.0.1.5", "10.0.2.99"}, // ssh elsewhere: dropped by the Lua plugin
		{"10.0.9.7", "10.0.2.99"}, // from management: stopped early by Go
	} {
		data, err := packet.Build(packet.Spec{Src: netip.MustParseAddr(p.src), Dst: netip.MustParseAddr(p.dst),
			Proto: packet.ProtoTCP, SrcPort: 40000, DstPort: 22, TCPFlags: packet.TCPSyn})
		if err != nil {
			return err
		}
		d := w.Run(&host.Packet{Hook: host.Forward, Data: data})
		by := d.By
		if by == "" {
			by = "-"
		}
		fmt.Fprintf(out, "%s -> %s:22  %-6s by %s tags [%s]\n", p.src, p.dst, d.Verdict, by, strings.Join(d.Tags, " "))
	}
	return nil
}

package host_test

import (
	"fmt"
	"net/netip"

	"github.com/luafw/luafw/host"
	"github.com/luafw/luafw/host/packet"
	"github.com/luafw/luafw/lua"
)

// tcp builds a TCP SYN from src to dst:dport.
func tcp(src, dst string, dport uint16) []byte {
	b, err := packet.Build(packet.Spec{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst),
		Proto: packet.ProtoTCP, SrcPort: 40000, DstPort: dport, TCPFlags: packet.TCPSyn})
	if err != nil {
		panic(err)
	}
	return b
}

// Load a plugin and run packets through it.
func ExampleNew() {
	eng := host.New(host.Options{})
	defer eng.Close()
	err := eng.Load([]host.PluginSpec{{Name: "no-telnet", File: "no_telnet.lua", Source: []byte(`
fw.register{hook = "forward", fn = function(pkt)
  if pkt.proto == "tcp" and pkt.dport == 23 then return fw.DROP end
end}`)}})
	if err != nil {
		fmt.Println(err)
		return
	}
	w := eng.NewWorker()
	defer w.Close()
	for _, port := range []uint16{22, 23} {
		d := w.Run(&host.Packet{Hook: host.Forward, Data: tcp("10.0.0.1", "10.0.0.2", port)})
		fmt.Printf("%d %s by %q\n", port, d.Verdict, d.By)
	}
	// Output:
	// 22 accept by ""
	// 23 drop by "no-telnet"
}

// A Go callback takes its place in the same chain as the Lua ones: by
// priority, Go first at equal priority. WithMatch gives it only the packets
// it wants.
func ExampleEngine_Register() {
	eng := host.New(host.Options{})
	defer eng.Close()
	dport, _ := host.ParsePortRange("8000-8999")
	err := eng.Register(host.Forward, host.PriorityMangle, "mark-web", func(c *host.Ctx) host.Verdict {
		c.SetMark(0x10, 0xff)
		return host.Accept
	}, host.WithMatch(host.Match{Protos: []uint8{packet.ProtoTCP}, DPorts: []host.PortRange{dport}}))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, port := range []uint16{80, 8080} {
		d := eng.Process(&host.Packet{Hook: host.Forward, Data: tcp("10.0.0.1", "10.0.0.2", port)})
		fmt.Printf("%d mark %#x\n", port, d.Mark)
	}
	// Output:
	// 80 mark 0x0
	// 8080 mark 0x10
}

// A Module gives scripts a Lua value of the program's own, built with the
// interpreter types of package lua.
func ExampleModule() {
	servers := map[string]bool{"10.0.2.10": true}
	inventory := host.Module{Name: "inventory", Open: func(L *lua.LState) lua.LValue {
		t := L.NewTable()
		t.RawSetString("is_server", L.NewFunction(func(L *lua.LState) int {
			L.Push(lua.LBool(servers[L.CheckString(1)]))
			return 1
		}))
		return t
	}}
	eng := host.New(host.Options{Modules: []host.Module{inventory}})
	defer eng.Close()
	err := eng.Load([]host.PluginSpec{{Name: "guard", Source: []byte(`
fw.register{hook = "forward", fn = function(pkt)
  if pkt.dport == 22 and not inventory.is_server(pkt.dst) then return fw.DROP end
end}`)}})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, dst := range []string{"10.0.2.10", "10.0.2.99"} {
		d := eng.Process(&host.Packet{Hook: host.Forward, Data: tcp("10.0.1.5", dst, 22)})
		fmt.Println(dst, d.Verdict)
	}
	// Output:
	// 10.0.2.10 accept
	// 10.0.2.99 drop
}

// Prepare and Commit split a reload in two, so that a program can do its
// own part (kernel rules, say) in between, and roll back by committing the
// previous set.
func ExampleEngine_Prepare() {
	eng := host.New(host.Options{})
	defer eng.Close()
	drop := func(port string) []host.PluginSpec {
		return []host.PluginSpec{{Name: "p", Source: []byte(`
fw.register{hook = "input", fn = function(pkt) if pkt.dport == ` + port + ` then return fw.DROP end end}`)}}
	}
	run := func() host.Verdict {
		return eng.Process(&host.Packet{Hook: host.Input, Data: tcp("10.0.0.1", "10.0.0.2", 23)}).Verdict
	}
	p1, _ := eng.Prepare(drop("23"))
	eng.Commit(p1)
	fmt.Println("first set:", run())

	p2, _ := eng.Prepare(drop("25"))
	old := eng.Commit(p2)
	fmt.Println("second set:", run())

	eng.Commit(old) // roll back
	fmt.Println("rolled back:", run())

	_, err := eng.Prepare([]host.PluginSpec{{Name: "bad", File: "bad.lua", Source: []byte("fw.register{")}})
	fmt.Println("a broken file is refused:", err != nil, "and the running set stays:", run())
	// Output:
	// first set: drop
	// second set: accept
	// rolled back: drop
	// a broken file is refused: true and the running set stays: drop
}

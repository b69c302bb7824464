// Package engine is luafw's engine core, shared by the daemon, `luafw
// replay`, `luafw test` and the public facade package host: it loads Lua
// plugins into sandboxed states, orders their callbacks into per-hook chains
// the way netfilter orders its hooks (by priority, ties in load order), runs
// packets through those chains and returns a Decision (verdict, packet mark,
// conntrack updates, tags, rewritten bytes, packets to send) for the kernel
// side to carry out. It makes no kernel calls.
//
// Layers, each in a package of its own: the bounded Lua standard library
// (internal/sandbox), the supervision of calls, budgets, idle sleep and the
// heap watch (internal/watchdog), the leaf parsers and data structures
// (host/packet, host/netset, host/luapattern, host/dnsmsg, host/tlshello,
// host/state). This package holds the engine core (engine.go, worker.go,
// ctx.go, plugin.go, prepare.go, match.go), the Lua API modules scripts
// use, one file each and listed in one table (pluginstate.go: fw, net, state,
// log, time, bit, dns, tls and the packet views), per-plugin memory
// accounting (pluginmemory.go), and trace (trace.go: what `luafw trace` shows).
//
// What the daemon needs beyond an embedder (RunRange, traces, segment
// matches, CT sources) is exported here and left out of package host.
//
// Costs: the packet path pays one atomic load per packet for the watchdog's
// sleep flag and one for the trace tap; a trivial callback about 0.25 µs.
package engine

// Package host is luafw's engine: it loads Lua plugins into sandboxes,
// orders their callbacks into per-hook chains the way netfilter orders its
// hooks (by priority, ties in load order), runs packets through those chains
// and returns a Decision — verdict, packet mark, conntrack updates, tags,
// rewritten bytes, packets to send — for the kernel side to carry out. It
// makes no kernel calls: a Go program embeds it to filter packets it got
// anywhere, and `luafw replay` and `luafw test` run it offline.
//
// An Engine holds the loaded plugins; Load replaces them atomically and
// keeps the old set when the new one fails. A Worker runs packets; make one
// per goroutine. Each worker owns one Lua state per plugin, while compiled
// code is shared.
//
// The Lua API is one file per module, each an open function and a table of
// named functions as in gopher-lua: luafw.go (fw), luanet.go and
// luadomains.go (net), luastore.go (state), lualog.go (log, print),
// luatime.go, luabit.go, luaproto.go (dns, tls), and the packet views
// luapkt.go, luatcp.go, luact.go, with rewrites in luarewrite.go and
// sending in luainject.go (fw.send, replies, the packet builders; the Ctx
// side is rewrite.go and inject.go); luastate.go builds a plugin's state from
// them. The sandbox is sandbox.go (the standard library), readonly.go
// (read-only tables), files.go (which files a script may read) and
// interrupt.go (budgets inside builtins).
//
// Memory is bounded off the packet path: each worker measures its plugins'
// states between packets when asked (memory.go), and a heap watch cuts off
// running calls when the process nears Options.MemoryLimit (memwatch.go).
// The packet path pays one atomic load per packet for it.
//
// Engine.Trace attaches a tap that records, for the packets its filter
// matches, every callback's verdict, time and changes (trace.go,
// tracework.go: what `luafw trace` shows). While none is attached the packet
// path pays one more atomic load per packet; while one is, a matching packet
// costs about a microsecond, and records a slow reader cannot take are
// dropped and counted, never waited for.
package engine

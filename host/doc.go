// Package host is luafw's engine: it loads Lua plugins into sandboxes,
// orders their callbacks into per-hook chains the way netfilter orders its
// hooks (by priority, ties in load order), runs packets through those chains
// and returns a Decision — verdict, packet mark, conntrack updates, tags —
// for the kernel side to carry out. It makes no kernel calls: a Go program
// embeds it to filter packets it got anywhere, and `luafw replay` and
// `luafw test` run it offline.
//
// An Engine holds the loaded plugins; Load replaces them atomically and
// keeps the old set when the new one fails. A Worker runs packets; make one
// per goroutine. Each worker owns one Lua state per plugin, while compiled
// code is shared.
//
// Memory is bounded off the packet path: each worker measures its plugins'
// states between packets when asked (memory.go), and a heap watch cuts off
// running calls when the process nears Options.MemoryLimit (memwatch.go).
// The packet path pays one atomic load per packet for it.
package host

// Package host is luafw's engine for Go programs that embed it: it loads Lua
// plugins into sandboxes, orders their callbacks and the program's own Go
// callbacks into per-hook chains the way netfilter orders its hooks (by
// priority, ties in load order), runs packets through those chains and
// returns a Decision: verdict, packet mark, conntrack updates, tags,
// rewritten bytes and packets to send. It makes no kernel calls; where the
// packets come from (NFQUEUE, a capture, a test) is the program's business.
//
// # Using it
//
// New makes an Engine; Load (or Prepare then Commit, for a two-phase reload)
// gives it plugins; Register adds Go callbacks to the same chains; a Worker
// runs packets, one goroutine per worker. Modules give scripts Lua values of
// the program's own; their Open functions use the interpreter types of
// package github.com/luafw/luafw/lua, the patched gopher-lua this module
// carries (docs/embedding.md says what it changes and why).
//
// # Guarantees
//
// A Load that fails leaves the running plugins as they were. Every Lua call
// runs within its plugin's time budget and memory limit; a failing call
// costs its packet the plugin's on_error verdict, never the program. Workers
// and reloads may run concurrently. New changes nothing outside the engine:
// no Go runtime setting, no interpreter-wide variable.
//
// # Costs
//
// A trivial Lua callback costs about 0.25 µs per packet and a realistic one
// (five field reads and a 10,000-entry set lookup) about 0.7 µs, with no
// allocation. Each worker keeps one Lua state per plugin. An engine runs a
// watchdog goroutine while Lua runs, and sleeps when none does.
//
// The types that are aliases here (Packet, Decision, Ctx, Options, ...) are
// defined in luafw's engine; their fields and methods are the public API.
package host

// Package watchdog owns the supervision of Lua calls in luafw's engine: the
// protocol between a worker running a call and whoever cuts it off (Slot),
// the per-packet budget, the budget ticker, its sleep, the coarse clocks,
// the heap watch that cuts every call when the process nears its memory
// ceiling, and the registry of top-level runs (plugin loads) that the heap
// watch cuts too. It knows nothing of plugins or packets.
//
// # The protocol, described once
//
// A worker owns a Slot and gives every Lua state it runs Slot.Poll as the
// state's poll function (lua.LState.SetPoll, patch 8 of package lua) and
// Slot.Interrupt as its interrupt flag (SetInterrupt, patch 2). Before a
// Lua call it calls Start(budget), which bumps the slot's call sequence
// number and publishes the budget; after the call, End, which takes the
// budget back and reports whether and why the call was cut.
//
// A call supervises itself. The VM polls every PollEvery instructions, and
// work done in Go counts toward the next poll (long builtins, big `..`
// copies, array fills). The first poll of a call notes the time; a later
// one that finds the call has run for its budget since then cuts it: it
// swaps the budget for "interrupted" and sets the interrupt flag, which the
// VM looks at before its next instruction and long builtins every 1024
// steps. A call of fewer than PollEvery instructions never reads the clock.
// StartPacket gives the calls of one packet a shared budget, measured the
// same way from the first poll of any of them (CutPacket).
//
// The watchdog goroutine is a backstop, not the clock: it ticks (every
// Options.Interval) only while a call has run for armAfter (its Poll wakes
// the watchdog), while a plugin loads, or while calls come faster than
// wakeRate a second, where the coarse clock it keeps (one atomic load per
// read) saves more clock reads than its ticks cost. While ticking it also
// cuts any call it has seen running for its whole budget, and the heap
// watch reads the Go heap every millisecond, cutting every running call
// the same way ("memory") when the heap passes half the ceiling or grows
// fast past a quarter of it (heap.go says why half). Otherwise it sleeps:
// every 100 ms (backstop) it still looks at the slots, for a call that runs
// long without polling, and once a second it runs the Sweep and Tick hooks;
// Coarse and WallClock then read the system clock.
//
// Who wins a cut: the compare-and-swap on the budget decides between a cut
// (by a poll, the ticker or the heap watch) and the call's end; End waits
// for the flag the cutter is about to set, so a cut never lands on the next
// call. The watchdog never sleeps through a long call: a Poll sets the
// slot's long flag and then reads asleep (Wake); the watchdog sets asleep
// and then reads every long flag and, under loadsMu, the loads (sequentially
// consistent atomics: one of the two sees the other).
//
// # Costs
//
// Per call: two atomic stores, an atomic load and a swap; a clock read per
// probeCalls calls while the watchdog sleeps. Per PollEvery instructions of
// a long call: one clock read. While the watchdog ticks: about 4,000 ticks
// and 1,000 heap readings a second. While it sleeps: 10 wake-ups a second (the backstop).
//
// # Slack
//
// A call that polls is cut at most one poll period (about 20-60 µs of Lua,
// or 8192 builtin steps) after its budget has run from its first poll, plus
// the longest single step that cannot poll (a copy below 1 MiB, a GC
// pause). One that does not poll is cut by the ticker (one tick) or, while
// it sleeps, by the backstop (100 ms) after its budget. A Go function of the
// embedding program that runs long without returning to the VM is not
// interrupted: the cut lands when it returns.
package watchdog

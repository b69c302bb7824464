// Package watchdog owns the supervision of Lua calls in luafw's engine: the
// protocol between a worker running a call and the goroutine that cuts it
// off (Slot), the budget ticker, the idle sleep, the coarse clocks, the heap
// watch that cuts every call when the process nears its memory ceiling, and
// the registry of top-level runs (plugin loads) that the heap watch cuts
// too. It knows nothing of plugins or packets.
//
// # The protocol, described once
//
// A worker owns a Slot. Before a Lua call it calls Start(budget), which
// bumps the slot's call sequence number and publishes the budget; after the
// call it calls End, which takes the budget back (0) and reports whether
// the call was cut. The watchdog goroutine ticks every Options.Interval: it
// notes, per slot, when it first saw the running call's sequence number, and
// once it has seen that call run for its whole budget (by its own clock) it
// swaps the budget for "interrupted" and sets the slot's interrupt flag,
// which every Lua state of the worker looks at between instructions (one
// atomic load; patch 2 of package lua) and long builtins look at every 1024
// steps. The compare-and-swap on the budget decides who wins between a cut
// and the call's end; End waits for the flag the cutter is about to set, so
// a cut never lands on the next call.
//
// The heap watch reads the Go heap every millisecond while Lua runs and cuts
// every running call the same way (as "memory") when the heap passes half
// the ceiling, or grows fast past a quarter of it; see heap.go for why half.
//
// Idle sleep: after idleTicks ticks in which no slot ran or started a call
// and no load ran, the watchdog sets asleep and both goroutines wait; the
// next Start, load or Wake wakes them. No call runs unwatched: Start stores
// the budget and then reads asleep; the watchdog stores asleep and then
// reads every budget (sequentially consistent atomics: one sees the other);
// a load registers under loadsMu and then reads asleep, while the watchdog
// sets asleep before it counts the loads under the same lock.
//
// # Costs
//
// While Lua runs: about 4,000 ticks a second of the budget ticker and 1,000
// heap readings (about a microsecond each). Per call: two atomic stores, an
// atomic load and a swap. While no Lua runs: one wake-up a second (the
// Options.Idle hook, for sweeps).
package watchdog

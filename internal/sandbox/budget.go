package sandbox

import (
	lua "github.com/luafw/luafw/lua"
)

// checkEvery is how many units of work (pattern-matching steps, table
// entries walked, bytes copied in 64-byte units) a builtin does between two
// looks at its call's interrupt flag. A look costs a nanosecond or two (an
// atomic load, and a non-blocking receive on the context at load time);
// 1024 steps of the cheapest builtin take well under a microsecond, so a
// cut-off call returns within microseconds of the cut. Every look also
// counts pollCharge VM instructions' worth of work toward the host's next
// poll (lua.LState.ChargePoll), which reads the clock: with the VM polling
// every 2048 instructions, a poll every 8 looks (about 100 ns per 8192
// steps), counted across all the builtin calls of one Lua call.
const (
	checkEvery = 1024
	pollCharge = 256
)

// interruptCheck raises a Lua error in L when the watchdog has cut off the
// running call (the worker's interrupt flag is set; for a top-level run at
// load, its context is done). The VM looks at them only between
// instructions; every builtin that can run long in Go calls this
// (through a budgetMeter) so that a call's budget also bounds time spent
// inside builtins.
func interruptCheck(L *lua.LState) {
	L.ChargePoll(pollCharge) // the host's look at the call's budget (lua patch 8), if it set one
	if L.Interrupted() {
		L.RaiseError("interrupted")
	}
	ctx := L.Context()
	if ctx == nil {
		return
	}
	select {
	case <-ctx.Done():
		L.RaiseError("%v", ctx.Err())
	default:
	}
}

// BudgetMeter counts a builtin's work and checks its call's budget every
// checkEvery units. The zero value is not usable; make one with Meter(L).
type BudgetMeter struct {
	L *lua.LState
	n int
}

// Meter returns a meter for a builtin running in L.
func Meter(L *lua.LState) BudgetMeter { return BudgetMeter{L: L} }

// Step records k units of work and raises a Lua error if the call has been
// cut off.
func (m *BudgetMeter) Step(k int) {
	m.n += k
	if m.n >= checkEvery {
		m.n = 0
		interruptCheck(m.L)
	}
}

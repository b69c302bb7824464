//go:build race

package sandbox

// raceSlowdown scales the time the hostile tests give honest work: the
// race detector slows Lua five to ten times.
const raceSlowdown = 10

//go:build race

package engine

// raceEnabled: the race detector slows Lua five to ten times, unevenly.
const raceEnabled = true

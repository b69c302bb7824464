//go:build !race

package sandbox

const raceSlowdown = 1

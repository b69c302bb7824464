package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/luafw/luafw/daemon"
)

func TestTopAndStatusShowTimers(t *testing.T) {
	next := time.Date(2026, 12, 6, 12, 0, 5, 0, time.UTC)
	snap := func(runs, fails uint64) *daemon.Status {
		return &daemon.Status{Plugins: []daemon.PluginStatus{{Name: "ban", Timers: []daemon.TimerStatus{
			{Where: "ban.lua:31", Every: 1, Next: next, Runs: runs, Failures: fails, LastError: "ban.lua:33: boom"}}}}}
	}
	var top bytes.Buffer
	renderTop(&top, snap(10, 0), snap(20, 2), 2*time.Second, next)
	var row []string
	for _, line := range strings.Split(top.String(), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == "ban.lua:31" {
			row = f
		}
	}
	if strings.Join(row, " ") != "ban ban.lua:31 5.0 1.0 0 12:00:05" {
		t.Fatalf("top's timer row %q in\n%s", row, top.String())
	}
	var st bytes.Buffer
	printStatus(&st, snap(20, 2))
	if !strings.Contains(st.String(), "ban.lua:31") || !strings.Contains(st.String(), "ban.lua:33: boom") || !strings.Contains(st.String(), "1s") {
		t.Fatalf("status does not show the timer:\n%s", st.String())
	}
}

package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/luafw/luafw/tests/lab"
)

// TestTimerLiftsBanOnRealTime runs docs/examples/honeypot_ban.lua in a
// daemon on the server: a connection to a honeypot port bans the client,
// and the plugin's fw.every timer lifts the ban on the real clock, with no
// packet needed to drive it. luafw status lists the timers.
func TestTimerLiftsBanOnRealTime(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 90*time.Second)
	plugin, err := os.ReadFile(filepath.Join("..", "docs", "examples", "honeypot_ban.lua"))
	if err != nil {
		t.Fatal(err)
	}
	serveTCP(t, l.Server, 80)
	d := startDaemon(t, l.Server, map[string]string{
		"luafw.yaml":       "plugins:\n  - file: honeypot_ban.lua\n    options: {ban: 4}\n",
		"honeypot_ban.lua": string(plugin),
	})
	if res := connect(ctx, l.Client, l.Server.Addr4, 80, 2*time.Second); res.Outcome != lab.Connected {
		t.Fatalf("before any ban: port 80 %v, want connected", res)
	}
	if res := connect(ctx, l.Client, l.Server.Addr4, 23, time.Second); res.Outcome != lab.TimedOut {
		t.Fatalf("honeypot port 23: %v, want dropped", res)
	}
	d.waitLog("honeypot: source banned", 5*time.Second)
	if res := connect(ctx, l.Client, l.Server.Addr4, 80, time.Second); res.Outcome != lab.TimedOut {
		t.Fatalf("right after the 4 s ban: port 80 %v, want dropped", res)
	}
	// The timer lifts the ban; the queue sees no packet from the client
	// meanwhile (its next SYN is the probe below).
	time.Sleep(4 * time.Second)
	var res lab.ConnectResult
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		if res = connect(ctx, l.Client, l.Server.Addr4, 80, time.Second); res.Outcome == lab.Connected {
			break
		}
	}
	if res.Outcome != lab.Connected {
		t.Fatalf("after the ban's 4 s: port 80 %v, want connected (the timer did not lift the ban)", res)
	}
	st := status(t, ctx, l.Server)
	var timers []string
	for _, p := range st.Plugins {
		for _, tm := range p.Timers {
			if tm.Runs > 0 && tm.Failures == 0 {
				timers = append(timers, tm.Where)
			}
		}
	}
	if len(timers) != 1 || !strings.HasSuffix(timers[0], "honeypot_ban.lua:31") {
		t.Fatalf("luafw status lists running timers %v, want the every(1) at honeypot_ban.lua:31 (the every(60) has not run yet)", timers)
	}
	d.stop()
}

package tests

import (
	"strings"
	"testing"
	"time"

	"github.com/luafw/luafw/tests/lab"
)

// TestTagCrossesDiversions: a tag set at prerouting (raw) is seen by a
// callback at forward (filter) on the kernel path, carried in a mark bit
// of marks.tags; scripts do not see the bit in pkt.mark.
func TestTagCrossesDiversions(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 60*time.Second)
	serveTCP(t, l.Server, 80, 81)
	d := startDaemon(t, l.Router, map[string]string{
		"luafw.yaml": "plugins:\n  - file: classify.lua\n  - file: policy.lua\nmarks: {tags: 0x0f00}\n",
		"classify.lua": `
fw.register{hook = "prerouting", priority = "raw", match = {proto = "tcp"}, fn = function(pkt)
  if pkt.dport == 80 then pkt:tag("web") end
end}`,
		"policy.lua": `
fw.register{hook = "forward", match = {proto = "tcp", dport = {80, 81}}, fn = function(pkt)
  if pkt.mark ~= 0 then log.error("tag bits leaked into pkt.mark", {mark = pkt.mark}) end
  if pkt:tagged("web") then return fw.DROP end
end}`,
	})
	if res := connect(ctx, l.Client, l.Server.Addr4, 80, time.Second); res.Outcome != lab.TimedOut {
		t.Errorf("port 80 (tagged web at prerouting): %v, want dropped at forward", res)
	}
	if res := connect(ctx, l.Client, l.Server.Addr4, 81, 3*time.Second); res.Outcome != lab.Connected {
		t.Errorf("port 81 (untagged): %v, want connected", res)
	}
	if strings.Contains(d.logs.String(), "tag bits leaked") {
		t.Errorf("a script saw the tag bits:\n%s", d.logs.String())
	}
	code, out, errs := luafwIn(t, ctx, l.Router, "check", d.dir+"/luafw.yaml")
	if code != 0 || !strings.Contains(out, "tags across diversions (marks.tags 0xf00): web=0x00000100") {
		t.Errorf("luafw check (exit %d) does not list the crossing tag:\n%s%s", code, out, errs)
	}
	d.stop()
}

package engine

import (
	"slices"
	"testing"
)

func TestCrossingTagsFromLiterals(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e, src("classify", `
local name = "computed"
fw.register{hook = "prerouting", priority = "raw", fn = function(pkt)
  if pkt.dport == 53 then pkt:tag("dns") end
  if pkt.dport == 25 then pkt:tag 'smtp' end
  pkt:tag("only-set")
  pkt:tag(name)
  local function nested() pkt:tag("voip") end
  nested()
end}`), src("policy", `
-- pkt:tagged("in-a-comment") is not code
fw.register{hook = "forward", fn = function(pkt)
  if pkt:tagged("smtp") or pkt:tagged("dns") or pkt:tagged("voip") then return fw.DROP end
  if pkt:tagged("never-set") then return fw.DROP end
  if pkt:tagged("computed") then return fw.DROP end
end}`))
	got := e.CrossingTags()
	// "computed" is set from a variable: it does not cross, though tested.
	if want := []string{"dns", "smtp", "voip"}; !slices.Equal(got, want) {
		t.Fatalf("CrossingTags() = %v, want %v", got, want)
	}
}

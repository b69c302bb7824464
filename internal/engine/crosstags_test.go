package engine

import (
	"slices"
	"testing"
)

func TestCrossingTagsFromLiterals(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e, src("classify", `
fw.register{hook = "prerouting", priority = "raw", fn = function(pkt)
  if pkt.dport == 53 then pkt:tag("dns") end
  if pkt.dport == 25 then pkt:tag 'smtp' end
  pkt:tag("only-set")
  local function nested() pkt:tag("voip") end
  nested()
end}`), src("policy", `
-- pkt:tagged("in-a-comment") is not code
local name = "computed"
fw.register{hook = "forward", fn = function(pkt)
  if pkt:tagged("voip") or pkt:tagged("smtp") or pkt:tagged("dns") then return fw.DROP end
  if pkt:tagged("never-set") then return fw.DROP end
  if pkt:tagged(name) then return fw.DROP end
end}`))
	// In the order tested; "never-set" is set by no one, "computed" is
	// tested by a computed name.
	if got, want := e.CrossingTags(), []string{"voip", "smtp", "dns"}; !slices.Equal(got, want) {
		t.Fatalf("CrossingTags() = %v, want %v", got, want)
	}
	// A plugin that sets tags by computed names (a classifier whose rules
	// name them) may set any tested one.
	mustLoad(t, e, src("classify", `
local rules = {{port = 5060, name = "voip"}}
fw.register{hook = "prerouting", fn = function(pkt)
  for _, r in ipairs(rules) do if pkt.dport == r.port then pkt:tag(r.name) end end
end}`), src("policy", `
fw.register{hook = "forward", fn = function(pkt)
  if pkt:tagged("voip") or pkt:tagged("bulk") then return fw.DROP end
end}`))
	if got, want := e.CrossingTags(), []string{"voip", "bulk"}; !slices.Equal(got, want) {
		t.Fatalf("with computed names: CrossingTags() = %v, want %v", got, want)
	}
}

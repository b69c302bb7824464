package rules

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
)

// TestRuleFailClosed: FailClosed takes the bypass flag off every queue
// rule (in the target's flags and in the text); the default keeps it.
func TestRuleFailClosed(t *testing.T) {
	for _, closed := range []bool{false, true} {
		rs := goldenSet()
		rs.FailClosed = closed
		prog, err := rs.build()
		if err != nil {
			t.Fatal(err)
		}
		targets := 0
		for _, tb := range prog.tables {
			for _, ch := range tb.chains {
				for _, r := range ch.rules {
					for _, e := range r.exprs {
						tg, ok := e.(*expr.Target)
						if !ok || tg.Name != "NFQUEUE" {
							continue
						}
						targets++
						info := tg.Info.(*xt.Unknown)
						flags := binary.NativeEndian.Uint16((*info)[4:])
						if want := map[bool]uint16{false: nfqFlagBypass, true: 0}[closed]; flags != want {
							t.Errorf("closed=%v: %s: flags %#x, want %#x", closed, strings.Join(r.text, " "), flags, want)
						}
					}
				}
			}
		}
		if targets < 10 {
			t.Fatalf("closed=%v: only %d queue rules found", closed, targets)
		}
		if text := rs.String(); strings.Contains(text, "--queue-bypass") == closed {
			t.Errorf("closed=%v: rule text:\n%s", closed, text)
		}
	}
}

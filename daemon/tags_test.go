package daemon

import (
	"slices"
	"testing"

	"github.com/luafw/luafw/internal/engine"
	"github.com/luafw/luafw/nfq/queue"
)

func TestTagMarks(t *testing.T) {
	tm, left := newTagMarks(0x0a00, []string{"dns", "web", "voip"})
	if !slices.Equal(tm.names, []string{"dns", "web"}) || tm.mask != 0x0a00 || !slices.Equal(left, []string{"voip"}) {
		t.Fatalf("map %+v, left %v: want dns on 0x200, web on 0x800, voip left out", tm, left)
	}
	if got := tm.decode(0x0801, nil); !slices.Equal(got, []string{"web"}) {
		t.Fatalf("decode(0x801) = %v", got)
	}
	// The verdict carries the decision's crossing tags in their bits,
	// clears those it no longer has, and keeps the script's bits out of
	// them.
	for _, tc := range []struct {
		kernel  uint32
		d       engine.Decision
		setMark bool
		mark    uint32
	}{
		{0, engine.Decision{Tags: []string{"web", "other"}}, true, 0x800},
		{0x800, engine.Decision{Tags: []string{"web"}}, false, 0x800},   // unchanged: no mark to send
		{0xa00, engine.Decision{Tags: []string{"dns"}}, true, 0x200},    // web untagged
		{0, engine.Decision{MarkSet: true, Mark: 0xff05}, true, 0xf505}, // script bits in the tag bits dropped
	} {
		v := verdict(&tc.d, tc.kernel, true, 0x80000000, 0x40000000, tm)
		if v.Verdict != queue.VerdictAccept || v.SetMark != tc.setMark || (v.SetMark && v.Mark != tc.mark) {
			t.Errorf("kernel %#x, %+v: verdict %+v, want set %v mark %#x", tc.kernel, tc.d, v, tc.setMark, tc.mark)
		}
	}
}

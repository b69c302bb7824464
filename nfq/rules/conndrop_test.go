package rules

import (
	"strings"
	"testing"

	"github.com/luafw/luafw/netfilter"
)

// TestConnMarkDrop: a flow whose ct mark has the drop bits is dropped in
// the diversion chain, before the offload accept and the queue.
func TestConnMarkDrop(t *testing.T) {
	rs := Set{Table: "lfw", ConnMarkDrop: 0x100, ConnMarkOffload: 0x1,
		Diversions: []Diversion{{Hook: netfilter.Forward, Priority: 1, Queues: [netfilter.NumCTStates]QueueSet{{0, 1}}}}}
	s := rs.String()
	drop := strings.Index(s, "ct mark & 0x00000100 == 0x00000100 counter drop")
	offload := strings.Index(s, "ct mark & 0x00000001 == 0x00000001 accept")
	queue := strings.Index(s, "NFQUEUE")
	if drop < 0 || offload < drop || queue < offload {
		t.Fatalf("rules:\n%s", s)
	}
}

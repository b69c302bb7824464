package rules

import (
	"slices"
	"strings"
	"testing"

	"github.com/luafw/luafw/netfilter"

	"github.com/google/nftables"
)

// A hook with one diversion clears luafw's bits in that chain and has no
// tail chain; with two, the tail clears them, and it stays (with its rule)
// when a reload leaves one: a verdict computed before the reload may
// still carry the skip bit out of the hook.
func TestRuleTailOnlyWithSeveralDiversions(t *testing.T) {
	q := [netfilter.NumCTStates]QueueSet{{0, 1}}
	one := Set{Families: []int{4}, Diversions: []Diversion{{Hook: netfilter.Forward, Priority: 1, Queues: q}}}
	two := Set{Families: []int{4}, Diversions: []Diversion{
		{Hook: netfilter.Forward, Priority: 1, Queues: q}, {Hook: netfilter.Forward, Priority: 101, Queues: [netfilter.NumCTStates]QueueSet{{1, 1}}}}}
	const clearAccept = "meta mark & 0x80000000 == 0x80000000 meta mark set meta mark & 0x3fffffff accept"
	if s := one.String(); strings.Contains(s, "tail_") || !strings.Contains(s, clearAccept) {
		t.Errorf("one diversion: want no tail and the bits cleared in its chain:\n%s", s)
	}
	if s := two.String(); !strings.Contains(s, "chain tail_forward") || strings.Contains(s, clearAccept) {
		t.Errorf("two diversions: want a tail and no clearing in their chains:\n%s", s)
	}
	// A diversion of one family counts in both: the daemon's final accept
	// sets the skip bit when any later segment exists.
	split := two
	split.Families, split.Diversions = nil, slices.Clone(two.Diversions)
	split.Diversions[1].Filter.Protos = []uint8{58}
	if s := split.String(); strings.Count(s, "chain tail_forward") != 2 {
		t.Errorf("a second diversion in IPv6 only: want a tail in both tables:\n%s", s)
	}

	progTwo, err := two.build()
	if err != nil {
		t.Fatal(err)
	}
	tables := Tables{name: DefaultTable, chains: map[nftables.TableFamily]map[string]*nftChainIR{nftables.TableFamilyIPv4: {}}}
	for _, ch := range progTwo.tables[0].chains {
		tables.chains[nftables.TableFamilyIPv4][ch.name] = ch
	}
	progOne, err := one.build()
	if err != nil {
		t.Fatal(err)
	}
	d := tables.diff(progOne)
	tail := d.next[nftables.TableFamilyIPv4]["tail_forward"]
	if tail == nil || len(tail.rules) != 1 {
		t.Fatalf("tail after a reload to one diversion: %+v, want kept with its rule", tail)
	}
	for _, r := range slices.Concat(d.retired, d.deleted, d.swapped) {
		if r.ch.name == "tail_forward" {
			t.Errorf("the diff touches the tail: %+v", d)
		}
	}
	if len(d.retired) != 1 || d.retired[0].ch.name != "div_forward_101" {
		t.Errorf("retired %v, want div_forward_101 alone", d.retired)
	}
}

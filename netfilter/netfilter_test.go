package netfilter_test

import (
	"strings"
	"testing"

	"github.com/luafw/luafw/netfilter"
)

func TestHookNamesRoundTrip(t *testing.T) {
	hooks := netfilter.Hooks()
	if len(hooks) != netfilter.NumHooks {
		t.Fatalf("Hooks() has %d hooks, NumHooks is %d", len(hooks), netfilter.NumHooks)
	}
	for i, h := range hooks {
		if int(h) != i {
			t.Errorf("Hooks()[%d] = %d, want hooks in number order", i, h)
		}
		for _, name := range []string{h.String(), strings.ToUpper(h.String())} {
			got, err := netfilter.ParseHook(name)
			if err != nil || got != h {
				t.Errorf("ParseHook(%q) = %v, %v; want %v", name, got, err, h)
			}
		}
	}
}

func TestCTStateNamesRoundTrip(t *testing.T) {
	states := netfilter.CTStates()
	if len(states) != netfilter.NumCTStates {
		t.Fatalf("CTStates() has %d states, NumCTStates is %d", len(states), netfilter.NumCTStates)
	}
	for i, s := range append([]netfilter.CTState{netfilter.CTUnknown}, states...) {
		if int(s) != i {
			t.Errorf("state %v has value %d, want %d", s, s, i)
		}
		got, err := netfilter.ParseCTState(s.String())
		if err != nil || got != s {
			t.Errorf("ParseCTState(%q) = %v, %v; want %v", s.String(), got, err, s)
		}
	}
}

func TestNames(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{netfilter.Prerouting.String(), "prerouting"},
		{netfilter.Input.String(), "input"},
		{netfilter.Forward.String(), "forward"},
		{netfilter.Output.String(), "output"},
		{netfilter.Postrouting.String(), "postrouting"},
		{netfilter.Hook(9).String(), "hook(9)"},
		{netfilter.CTUnknown.String(), ""},
		{netfilter.CTNew.String(), "new"},
		{netfilter.CTEstablished.String(), "established"},
		{netfilter.CTRelated.String(), "related"},
		{netfilter.CTInvalid.String(), "invalid"},
		{netfilter.CTUntracked.String(), "untracked"},
		{netfilter.CTState(9).String(), "ctstate(9)"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestUnknownNamesRefused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		parse func(string) error
		in    string
		want  string
	}{
		{"hook", func(s string) error { _, err := netfilter.ParseHook(s); return err }, "ingress",
			`unknown hook "ingress" (want one of prerouting, input, forward, output, postrouting)`},
		{"hook empty", func(s string) error { _, err := netfilter.ParseHook(s); return err }, "",
			`unknown hook "" (want one of prerouting, input, forward, output, postrouting)`},
		{"ct state", func(s string) error { _, err := netfilter.ParseCTState(s); return err }, "closed",
			`unknown conntrack state "closed" (want one of new, established, related, invalid, untracked)`},
	} {
		err := tc.parse(tc.in)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: parse %q: error %v, want %q", tc.name, tc.in, err, tc.want)
		}
	}
}

func TestPriorityNamesOrdered(t *testing.T) {
	names := netfilter.PriorityNames()
	order := []string{"raw", "conntrack", "mangle", "dstnat", "filter", "security", "srcnat"}
	if len(names) != len(order) {
		t.Fatalf("PriorityNames() has %d names, want %d", len(names), len(order))
	}
	prev := netfilter.PriorityDefrag
	for _, n := range order {
		p, ok := names[n]
		if !ok || p <= prev || p >= netfilter.PriorityLast {
			t.Errorf("priority %q = %d (present %v), want between %d and PriorityLast", n, p, ok, prev)
		}
		prev = p
	}
	if names["filter"] != netfilter.PriorityFilter || names["dstnat"] != netfilter.PriorityDstNAT {
		t.Errorf("filter %d, dstnat %d: wrong values", names["filter"], names["dstnat"])
	}
}

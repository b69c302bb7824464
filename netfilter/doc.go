// Package netfilter holds the one set of netfilter model names luafw uses:
// the hooks a packet meets, the priorities of netfilter's own stages, and the
// conntrack states a packet can be in. The host (what scripts see), the
// kernel side (nfq/...) and the daemon all name these through this package,
// so a hook or state is spelled, numbered and parsed the same everywhere.
//
// Guarantees: a Hook's value is the kernel's NF_INET_* hook number
// (Prerouting is NF_INET_PRE_ROUTING = 0 ... Postrouting is
// NF_INET_POST_ROUTING = 4), so a hook number read from the kernel converts
// with Hook(n). Every name round-trips through its Parse function, matching
// case-insensitively; unknown names are refused with an error that lists the
// allowed ones.
//
// Costs: none to speak of. It is a leaf (standard library only) with no
// package-level state; String is an array index, Parse a loop over at most
// six names, and the functions returning tables build a fresh copy per call.
package netfilter

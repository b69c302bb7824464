package netfilter

import (
	"fmt"
	"strings"
)

// CTState is a connection's conntrack state as a packet saw it (nftables'
// `ct state`).
type CTState uint8

// Conntrack states. CTUnknown means luafw was not told (no conntrack); the
// others are the states a packet can have.
const (
	CTUnknown     CTState = iota
	CTNew                 // first packet(s) of a connection
	CTEstablished         // a connection that has seen both directions, or a reply
	CTRelated             // an expected connection (helpers) or an ICMP error for one
	CTInvalid             // not trackable (also: conntrack not active for the packet)
	CTUntracked           // exempted from tracking (notrack)
)

// NumCTStates is how many states a packet can have: CTNew..CTUntracked.
const NumCTStates = int(CTUntracked - CTUnknown)

// CTStates returns the states a packet can have, CTNew..CTUntracked, in
// order: CTStates()[i] is CTNew+CTState(i).
func CTStates() []CTState {
	return []CTState{CTNew, CTEstablished, CTRelated, CTInvalid, CTUntracked}
}

// CTStateNames returns the states' names indexed by CTState; CTUnknown's
// is "".
func CTStateNames() [NumCTStates + 1]string {
	return [...]string{"", "new", "established", "related", "invalid", "untracked"}
}

func (s CTState) String() string {
	if int(s) <= NumCTStates {
		return CTStateNames()[s]
	}
	return fmt.Sprintf("ctstate(%d)", uint8(s))
}

// ParseCTState parses "new", "established", ... (any case); "" is
// CTUnknown.
func ParseCTState(s string) (CTState, error) {
	names := CTStateNames()
	for i, n := range names {
		if strings.EqualFold(s, n) {
			return CTState(i), nil
		}
	}
	return 0, fmt.Errorf("unknown conntrack state %q (want one of %s)", s, strings.Join(names[1:], ", "))
}

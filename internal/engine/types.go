package engine

import (
	"fmt"
	"strings"

	"github.com/luafw/luafw/netfilter"
)

// The netfilter model names (hooks, stage priorities, conntrack states) are
// defined once, in package netfilter; the engine re-exports them so its API
// names them too.

// Hook is a netfilter hook: where on its path through the kernel a packet
// meets a chain of callbacks (netfilter.Hook).
type Hook = netfilter.Hook

// The five netfilter hooks luafw diverts (see netfilter.Hook).
const (
	Prerouting  = netfilter.Prerouting
	Input       = netfilter.Input
	Forward     = netfilter.Forward
	Output      = netfilter.Output
	Postrouting = netfilter.Postrouting
	NumHooks    = netfilter.NumHooks
)

// hookNames are the hooks' names indexed by Hook.
var hookNames = netfilter.HookNames()

// ParseHook returns the hook with the given name. The netdev hooks
// ("ingress", "egress") are refused with the reason (netdevhooks.go).
func ParseHook(s string) (Hook, error) {
	if err := NetdevHookError(s); err != nil {
		return 0, err
	}
	return netfilter.ParseHook(s)
}

// Hooks returns every hook, in declaration order.
func Hooks() []Hook { return netfilter.Hooks() }

// Netfilter's fixed stage priorities (see netfilter.PriorityFirst...).
const (
	PriorityFirst     = netfilter.PriorityFirst
	PriorityDefrag    = netfilter.PriorityDefrag
	PriorityRaw       = netfilter.PriorityRaw
	PriorityConntrack = netfilter.PriorityConntrack
	PriorityMangle    = netfilter.PriorityMangle
	PriorityDstNAT    = netfilter.PriorityDstNAT
	PriorityFilter    = netfilter.PriorityFilter
	PrioritySecurity  = netfilter.PrioritySecurity
	PrioritySrcNAT    = netfilter.PrioritySrcNAT
	PriorityLast      = netfilter.PriorityLast
)

// PriorityNames returns the names scripts use (fw.priority.NAME) and their
// values.
func PriorityNames() map[string]int { return netfilter.PriorityNames() }

// Verdict is what a callback decides about a packet.
type Verdict uint8

const (
	// Accept passes the packet on to the next callback; a packet every
	// callback accepted is accepted.
	Accept Verdict = iota
	// Drop is final: the packet is discarded.
	Drop
	// Stop accepts the packet and skips the remaining callbacks of the hook
	// (netfilter's NF_STOP, pf's quick).
	Stop
	// Reject is final: the packet is dropped and answered with a TCP reset
	// or an ICMP unreachable.
	Reject
	// Repeat asks netfilter to run the hook again.
	Repeat
	numVerdicts
)

// The values scripts see as fw.ACCEPT etc.
const (
	luaDrop   = 0
	luaAccept = 1
	luaRepeat = 4
	luaStop   = 5
	luaReject = 100
)

var verdictNames = [...]string{"accept", "drop", "stop", "reject", "repeat"}

func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// Final reports whether the verdict ends the packet's walk down the chain.
func (v Verdict) Final() bool { return v != Accept }

// ParseVerdict parses a verdict name such as "drop".
func ParseVerdict(s string) (Verdict, error) {
	for i, n := range verdictNames {
		if strings.EqualFold(s, n) {
			return Verdict(i), nil
		}
	}
	return 0, fmt.Errorf("unknown verdict %q (want one of %s)", s, strings.Join(verdictNames[:], ", "))
}

// CTState is a connection's conntrack state as the packet saw it
// (netfilter.CTState).
type CTState = netfilter.CTState

// Conntrack states. CTUnknown means luafw was not told (no conntrack).
const (
	CTUnknown     = netfilter.CTUnknown
	CTNew         = netfilter.CTNew
	CTEstablished = netfilter.CTEstablished
	CTRelated     = netfilter.CTRelated
	CTInvalid     = netfilter.CTInvalid
	CTUntracked   = netfilter.CTUntracked
)

// ctStateNames are the states' names indexed by CTState ("" for CTUnknown).
var ctStateNames = netfilter.CTStateNames()

// ParseCTState parses "new", "established", ...; "" is CTUnknown.
func ParseCTState(s string) (CTState, error) { return netfilter.ParseCTState(s) }

// Packet is one packet as the kernel (or a capture, or an embedding program)
// hands it to the engine. Data starts at the IP header and must stay
// unchanged until Run returns.
type Packet struct {
	Hook   Hook
	Data   []byte
	InDev  string // input interface name, "" when not known at this hook
	OutDev string // output interface name, "" when not known at this hook
	Mark   uint32 // the packet mark as the kernel had it

	UID, GID uint32 // owner of a locally generated packet
	HasUID   bool
	// Cgroup is the cgroup v2 path of a locally generated packet's socket
	// (relative to the cgroup2 root), valid when CgroupKnown; otherwise
	// the worker's CgroupSource is asked (cgroup.go).
	Cgroup      string
	CgroupKnown bool

	CTState     CTState // conntrack state; CTUnknown when not known
	CTMark      uint32  // the connection's mark, valid when CTMarkKnown
	CTMarkKnown bool
	// CTPackets is how many packets the connection has carried in its
	// original direction, this one included (conntrack's counter); 0 when
	// not known. Matches with `first` read it.
	CTPackets uint64

	// Tags carried from an earlier hook of the same packet (pf's tag).
	Tags []string
}

// CTUpdate collects the conntrack changes callbacks asked for.
type CTUpdate struct {
	SetMark    bool
	Mark       uint32 // new bits
	MarkMask   uint32 // which bits of the mark change
	SetTimeout bool
	Timeout    uint32 // seconds
	SetLabels  bool
	Labels     [2]uint64 // label bits to set (bit n of the 128)
}

// Any reports whether there is anything to apply.
func (u CTUpdate) Any() bool { return u.SetMark || u.SetTimeout || u.SetLabels }

// Decision is the outcome of running a packet through a chain: what the
// kernel side carries out.
type Decision struct {
	Verdict Verdict
	Hook    Hook
	By      string // plugin whose callback gave the final verdict; "" when none did
	ByName  string // that callback's registered name

	Mark    uint32 // the packet mark after the callbacks
	MarkSet bool   // whether a callback changed it

	CT CTUpdate

	// Tags set on the packet so far. It aliases the worker's memory and is
	// valid until the worker's next Run.
	Tags []string

	// Data is the rewritten packet when a callback rewrote it, nil when
	// not; the kernel side sends it with the verdict. It is a fresh buffer
	// per rewritten packet.
	Data []byte

	// Injected are the packets callbacks asked to send (fw.send, replies),
	// in order. The slice aliases the worker's memory and is valid until
	// the worker's next Run; each Data is a buffer of its own.
	Injected []Injected

	// Errors counts callbacks that failed (error, timeout, quarantine) on
	// this packet; each was given its plugin's on_error verdict.
	Errors int

	// OverBudget counts Lua callbacks that were not run, or were cut off,
	// because the packet's budget ran out (Options.PacketBudget); each
	// gave its plugin's on_error verdict. They are not in Errors.
	OverBudget int

	// CaptureBy names the plugin that asked for the packet to be captured
	// (pkt:capture()); "" when none did.
	CaptureBy string
}

package host

import (
	"github.com/luafw/luafw/internal/engine"
	"github.com/luafw/luafw/internal/watchdog"
)

// The engine's data types, shared with the daemon.
type (
	// Options configure an Engine.
	Options = engine.Options
	// PluginSpec names a plugin's file or source, its budget, limits and
	// options.
	PluginSpec = engine.PluginSpec
	// Module is a Lua module of the program: Open builds the value scripts
	// see as the global Name, once per Lua state.
	Module = engine.Module
	// GoFunc is a Go callback in a chain.
	GoFunc = engine.GoFunc
	// Ctx is one packet on its way down a chain, as a Go callback sees it.
	Ctx = engine.Ctx
	// Packet is what a Worker runs: the IP packet and where it was seen.
	Packet = engine.Packet
	// Decision is the outcome of a packet's walk down a chain.
	Decision = engine.Decision
	// Match selects the packets a callback wants.
	Match = engine.Match
	// PortRange is a range of ports in a Match.
	PortRange = engine.PortRange
	// Hook is a netfilter hook.
	Hook = engine.Hook
	// Verdict is what a callback decides about a packet.
	Verdict = engine.Verdict
	// CTState is a connection's conntrack state as the packet saw it.
	CTState = engine.CTState
	// CTUpdate collects the conntrack changes callbacks asked for.
	CTUpdate = engine.CTUpdate
	// Injected is a packet a callback asked to send.
	Injected = engine.Injected
	// LoadError is a script problem found by Load, with file and line.
	LoadError = engine.LoadError
	// CallbackInfo describes one running callback.
	CallbackInfo = engine.CallbackInfo
	// CallbackStats are one callback's counters.
	CallbackStats = engine.CallbackStats
	// PluginStatus is a running plugin's status.
	PluginStatus = engine.PluginStatus
	// ClusterState holds the state scripts ask for with {scope = "cluster"};
	// package host/state/cluster shares it through Redis.
	ClusterState = engine.ClusterState
)

// The hooks.
const (
	Prerouting  = engine.Prerouting
	Input       = engine.Input
	Forward     = engine.Forward
	Output      = engine.Output
	Postrouting = engine.Postrouting
)

// Netfilter's stage priorities: a callback runs after every stage whose
// priority is lower or equal.
const (
	PriorityFirst     = engine.PriorityFirst
	PriorityDefrag    = engine.PriorityDefrag
	PriorityRaw       = engine.PriorityRaw
	PriorityConntrack = engine.PriorityConntrack
	PriorityMangle    = engine.PriorityMangle
	PriorityDstNAT    = engine.PriorityDstNAT
	PriorityFilter    = engine.PriorityFilter
	PrioritySecurity  = engine.PrioritySecurity
	PrioritySrcNAT    = engine.PrioritySrcNAT
	PriorityLast      = engine.PriorityLast
)

// The verdicts.
const (
	Accept = engine.Accept
	Drop   = engine.Drop
	Stop   = engine.Stop
	Reject = engine.Reject
	Repeat = engine.Repeat
)

// The conntrack states.
const (
	CTUnknown     = engine.CTUnknown
	CTNew         = engine.CTNew
	CTEstablished = engine.CTEstablished
	CTRelated     = engine.CTRelated
	CTInvalid     = engine.CTInvalid
	CTUntracked   = engine.CTUntracked
)

// Defaults of Options and PluginSpec.
const (
	DefaultBudget       = engine.DefaultBudget
	DefaultPluginMemory = engine.DefaultPluginMemory
	DefaultInjectRate   = engine.DefaultInjectRate
	DefaultInjectBurst  = engine.DefaultInjectBurst
)

// ErrInjectRate is returned by Ctx.Send and the replies when the plugin's
// send budget is spent.
var ErrInjectRate = engine.ErrInjectRate

// ParseHook returns the hook with the given name ("forward").
func ParseHook(s string) (Hook, error) { return engine.ParseHook(s) }

// ParseVerdict parses a verdict name such as "drop".
func ParseVerdict(s string) (Verdict, error) { return engine.ParseVerdict(s) }

// ParsePortRange parses "22" or "1024-65535".
func ParsePortRange(s string) (PortRange, error) { return engine.ParsePortRange(s) }

// ParseTCPFlags parses "syn,!ack": the named flags must be set, those with
// "!" clear.
func ParseTCPFlags(s string) (mask, flags uint8, err error) { return engine.ParseTCPFlags(s) }

// ParseProto reads a protocol name (tcp, udp, icmp, icmpv6) or number.
func ParseProto(s string) (uint8, error) { return engine.ParseProto(s) }

// DefaultMemoryLimit is the process memory ceiling the daemon uses when its
// configuration names none (Options.MemoryLimit).
const DefaultMemoryLimit = watchdog.DefaultMemoryLimit

// SetMemoryCeiling is process-wide: it prepares the Go runtime of a process
// whose engines have an Options.MemoryLimit of ceiling. It sets the GC's
// soft memory limit to half the ceiling (the line where the engine cuts Lua
// calls off), so that garbage stays below it, and raises GOMAXPROCS to at
// least 4, so that the heap watch gets a processor while a script copies a
// huge string. New never calls it; the luafw daemon and `luafw replay` do.
func SetMemoryCeiling(ceiling int64) { watchdog.SetMemoryCeiling(ceiling) }

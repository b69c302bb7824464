package engine

import (
	"fmt"
	"sync"
	"time"

	"github.com/luafw/luafw/internal/sandbox"

	lua "github.com/luafw/luafw/lua"
)

// Limits on what a plugin can make of the engine's namespaces (issue 18):
// each object a script creates is bounded by its own limits, so their
// number must be too. docs/lua-api.md lists them.
const (
	// MaxNameLen is the longest name, in bytes, of a callback
	// (fw.register{name=}), a state object (state.map, state.counter,
	// state.bucket) and a tag (pkt:tag). Longer ones are refused with an
	// error naming the limit.
	MaxNameLen = 128
	// MaxRegistrations is how many fw.register calls one plugin may make
	// (each may name several hooks); the next is a load error at its
	// file:line.
	MaxRegistrations = 256
	// MaxStateObjects is how many state objects (maps, counters and bucket
	// families, node-local and cluster scope together) one plugin may
	// open. They are opened while the plugin loads, at its top level, as
	// pf and nftables create their tables with the rule set: a callback may
	// open again one its plugin opened at load, never a new one.
	MaxStateObjects = 32
	// MaxEngineStateObjects bounds the state objects the plugins of one
	// engine create over its life: the shared store keeps them across
	// reloads, also of plugins that are gone.
	MaxEngineStateObjects = 4096
	// DefaultPacketBudget is the least total time the Lua callbacks of one
	// hook may spend on one packet (Options.PacketBudget): 10 times
	// DefaultBudget. When a loaded plugin's per-call budget is longer, the
	// default packet budget is that budget.
	DefaultPacketBudget = 10 * DefaultBudget
	// maxFailureText is the most bytes of a script's text (an error
	// message, a returned value) a failure message quotes.
	maxFailureText = sandbox.MaxErrorText
)

// checkName raises a Lua error when name is longer than MaxNameLen.
func checkName(L *lua.LState, what, name string) {
	if len(name) > MaxNameLen {
		L.RaiseError("%s: name of %d bytes is longer than the limit of %d bytes", what, len(name), MaxNameLen)
	}
}

// stateKey names a state object in the per-plugin and per-engine sets.
type stateKey struct {
	kind    byte // 'm'ap, 'c'ounter, 'b'ucket
	cluster bool
	name    string
}

func (k stateKey) what() string {
	switch k.kind {
	case 'm':
		return "state.map"
	case 'c':
		return "state.counter"
	}
	return "state.bucket"
}

// stateNames are the state objects a plugin opened while it loaded.
type stateNames struct {
	mu    sync.Mutex
	names map[stateKey]struct{}
	// kernel are the maps it opened with the kernel option (kernelmaps.go).
	kernel map[stateKey]struct{}
}

// engineStateNames are the state objects the engine's plugins created.
type engineStateNames struct {
	mu    sync.Mutex
	names map[stateKey]struct{}
}

// openStateObject checks that ps may open the state object k: at load, as
// one of at most MaxStateObjects of its plugin (and MaxEngineStateObjects
// of the engine); in a callback, only one its plugin opened at load. It
// raises a Lua error otherwise.
func (ps *pluginState) openStateObject(L *lua.LState, k stateKey) {
	checkName(L, k.what(), k.name)
	sn := &ps.p.state
	sn.mu.Lock()
	_, known := sn.names[k]
	n := len(sn.names)
	sn.mu.Unlock()
	if known {
		return
	}
	if !ps.loading {
		L.RaiseError("%s: %s are created while the plugin loads (at its top level), not in callbacks; %q was not opened at load",
			k.what(), stateKindPlural(k.kind), sandbox.Cut(k.name, MaxNameLen))
	}
	if n >= MaxStateObjects {
		L.RaiseError("%s: a plugin opens at most %d state objects (maps, counters and buckets)", k.what(), MaxStateObjects)
	}
	if err := ps.e.stateNames.add(k); err != nil {
		L.RaiseError("%s: %v", k.what(), err)
	}
	sn.mu.Lock()
	if sn.names == nil {
		sn.names = map[stateKey]struct{}{}
	}
	sn.names[k] = struct{}{}
	sn.mu.Unlock()
}

func stateKindPlural(kind byte) string {
	switch kind {
	case 'm':
		return "maps"
	case 'c':
		return "counters"
	}
	return "bucket families"
}

func (s *engineStateNames) add(k stateKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.names[k]; ok {
		return nil
	}
	if len(s.names) >= MaxEngineStateObjects {
		return fmt.Errorf("the plugins of this process created %d state objects, the limit", MaxEngineStateObjects)
	}
	if s.names == nil {
		s.names = map[stateKey]struct{}{}
	}
	s.names[k] = struct{}{}
	return nil
}

// packetBudget is the total time the Lua callbacks of one hook may spend on
// one packet, for a set of plugins.
func (e *Engine) packetBudget(plugins []*plugin) time.Duration {
	if e.opts.PacketBudget > 0 {
		return e.opts.PacketBudget
	}
	b := DefaultPacketBudget
	for _, p := range plugins {
		b = max(b, p.spec.Budget)
	}
	return b
}

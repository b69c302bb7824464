package netfilter

import (
	"fmt"
	"strings"
)

// Hook is a netfilter hook: where on its path through the kernel a packet
// meets a chain of callbacks. Its value is the kernel's NF_INET_* number.
type Hook uint8

// The five netfilter hooks luafw diverts, in the order a forwarded packet
// meets them (prerouting, forward, postrouting) or a local one (output,
// postrouting; prerouting, input).
const (
	Prerouting  Hook = iota // NF_INET_PRE_ROUTING
	Input                   // NF_INET_LOCAL_IN
	Forward                 // NF_INET_FORWARD
	Output                  // NF_INET_LOCAL_OUT
	Postrouting             // NF_INET_POST_ROUTING
	NumHooks    int  = iota
)

// HookNames returns the hooks' names indexed by Hook.
func HookNames() [NumHooks]string {
	return [NumHooks]string{"prerouting", "input", "forward", "output", "postrouting"}
}

func (h Hook) String() string {
	if int(h) < NumHooks {
		return HookNames()[h]
	}
	return fmt.Sprintf("hook(%d)", uint8(h))
}

// ParseHook returns the hook with the given name (any case).
func ParseHook(s string) (Hook, error) {
	names := HookNames()
	for i, n := range names {
		if strings.EqualFold(s, n) {
			return Hook(i), nil
		}
	}
	return 0, fmt.Errorf("unknown hook %q (want one of %s)", s, strings.Join(names[:], ", "))
}

// Hooks returns every hook, in the order of their numbers (which is also
// the order along a packet's path: prerouting first, postrouting last).
func Hooks() []Hook { return []Hook{Prerouting, Input, Forward, Output, Postrouting} }

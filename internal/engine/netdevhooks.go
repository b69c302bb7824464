package engine

import (
	"fmt"
	"strings"
)

// NetdevHookError explains why a netdev hook ("ingress", "egress") cannot
// carry luafw callbacks, or returns nil for any other name. NFQUEUE queues
// only from the IPv4/IPv6/bridge/arp families' hooks: the kernel has no
// queue verdict for netdev chains (nf_queue is not reached from
// nf_hook_ingress/egress), so nothing could divert those packets to us.
// docs/design.md "Ingress and egress" says what to use there instead.
func NetdevHookError(name string) error {
	h := strings.ToLower(name)
	if h != "ingress" && h != "egress" {
		return nil
	}
	return fmt.Errorf("hook %q is a netdev hook: NFQUEUE cannot queue packets from it; use nftables netdev rules and sets "+
		"(or tc/XDP) there, or hook \"prerouting\" at priority \"raw\" (docs/design.md, \"Ingress and egress\")", h)
}

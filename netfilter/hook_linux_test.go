package netfilter_test

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/luafw/luafw/netfilter"
)

// TestHookNumbers pins the guarantee that a Hook is the kernel's hook number.
func TestHookNumbers(t *testing.T) {
	for h, nf := range map[netfilter.Hook]int{
		netfilter.Prerouting:  unix.NF_INET_PRE_ROUTING,
		netfilter.Input:       unix.NF_INET_LOCAL_IN,
		netfilter.Forward:     unix.NF_INET_FORWARD,
		netfilter.Output:      unix.NF_INET_LOCAL_OUT,
		netfilter.Postrouting: unix.NF_INET_POST_ROUTING,
	} {
		if int(h) != nf {
			t.Errorf("%v = %d, kernel number %d", h, h, nf)
		}
	}
}

package daemon

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// CheckPrivileges reports, before a run touches anything, a process
// without CAP_NET_ADMIN in its effective set (root has it): nftables,
// NFQUEUE and ctnetlink would refuse it, each with a less telling error.
func CheckPrivileges() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("reading the process's capabilities: %w", err)
	}
	if data[0].Effective&(1<<unix.CAP_NET_ADMIN) == 0 {
		return fmt.Errorf("needs root or CAP_NET_ADMIN (uid %d has not): run it as root, under its systemd unit (which grants CAP_NET_ADMIN), or try offline with luafw check and luafw replay", os.Geteuid())
	}
	return nil
}

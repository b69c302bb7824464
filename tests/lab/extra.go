package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"regexp"
)

// More namespaces and links than the three of the basic topology, for
// tests of several routers (a fleet sharing state, an HA pair). They obey
// the same guards: every namespace is recorded with its inode and removed
// by Close, and every link is created from inside a lab namespace with its
// peer placed directly in another one.

var roleRE = regexp.MustCompile(`^[a-z0-9]{1,12}$`)

// AddNS adds an empty namespace (loopback up) playing role, 1-12
// lowercase letters or digits. Close removes it with the others.
func (l *Lab) AddNS(ctx context.Context, role string) (*NS, error) {
	if !roleRE.MatchString(role) {
		return nil, fmt.Errorf("lab: role %q: want 1-12 lowercase letters or digits", role)
	}
	n, err := l.addNS(ctx, role, nil)
	if err != nil {
		return nil, err
	}
	if _, err := n.Run(ctx, "ip", "link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	return n, nil
}

// Link joins a and b with a veth pair: interface aIf with address aAddr
// (a prefix such as "10.201.5.1/24", or "" for none) in a, bIf with bAddr
// in b, both up.
func (l *Lab) Link(ctx context.Context, a *NS, aIf, aAddr string, b *NS, bIf, bAddr string) error {
	if a == nil || b == nil || a.lab != l || b.lab != l {
		return fmt.Errorf("lab: Link: both namespaces must belong to this lab")
	}
	if _, err := a.Run(ctx, "ip", "link", "add", aIf, "type", "veth", "peer", "name", bIf, "netns", b.Name); err != nil {
		return err
	}
	for _, side := range []struct {
		n        *NS
		ifc, pfx string
	}{{a, aIf, aAddr}, {b, bIf, bAddr}} {
		script := fmt.Sprintf("ip link set %s up\n", side.ifc)
		if side.pfx != "" {
			if _, err := netip.ParsePrefix(side.pfx); err != nil {
				return fmt.Errorf("lab: Link: %w", err)
			}
			script += fmt.Sprintf("ip addr add %s dev %s\n", side.pfx, side.ifc)
		}
		if _, err := side.n.Shell(ctx, script); err != nil {
			return err
		}
	}
	return nil
}

// DialFrom connects from inside the namespace, from local ("IP:port", port
// 0 for any), to addr; both with literal IPs.
func (n *NS) DialFrom(ctx context.Context, network, local, addr string) (net.Conn, error) {
	if err := checkAddr(addr, false); err != nil {
		return nil, err
	}
	ap, err := netip.ParseAddrPort(local)
	if err != nil {
		return nil, fmt.Errorf("lab: DialFrom: local address %q: want a literal IP:port", local)
	}
	la := net.TCPAddrFromAddrPort(ap)
	var c net.Conn
	err = n.Do(func() (err error) {
		d := net.Dialer{LocalAddr: la}
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: [%s] dial %s %s from %s: %w", n.Name, network, addr, local, err)
	}
	return c, nil
}

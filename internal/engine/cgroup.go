package engine

import (
	"fmt"

	lua "github.com/luafw/luafw/lua"
	"github.com/luafw/luafw/netfilter"
)

// Process identity by cgroup: match = {cgroup = "system.slice/nginx.service"}
// and pkt.cgroup, for locally generated packets (the output and
// postrouting hooks). The path is the local socket's cgroup v2, relative
// to the cgroup2 root; a match admits that cgroup and every cgroup below
// it, as nftables' `socket cgroupv2 level N "PATH"` does (the daemon puts
// that into the kernel rule). NFQUEUE does not carry the cgroup: the
// packet says it (Packet.Cgroup: tests, replays, embedders), or the
// worker's CgroupSource finds it, once per packet and only when a match or
// the script asks.

// CgroupSource finds the cgroup of the local socket that sent c's packet
// (the daemon sets one per worker of the output and postrouting hooks).
type CgroupSource interface {
	Cgroup(c *Ctx) (path string, ok bool)
}

// SetCgroupSource sets where the worker looks up packets' cgroups.
func (w *Worker) SetCgroupSource(src CgroupSource) { w.cgroups = src }

// Cgroup returns the cgroup path of the local socket the packet came
// from: Packet.Cgroup when the packet says, else what the worker's
// CgroupSource finds (asked once per packet); ok is false when not known
// (a forwarded packet, no source).
func (c *Ctx) Cgroup() (string, bool) {
	if c.pkt.CgroupKnown {
		return c.pkt.Cgroup, true
	}
	if !c.cgLooked {
		c.cgLooked = true
		c.cg, c.cgOK = "", false
		if src := c.w.cgroups; src != nil {
			c.cg, c.cgOK = src.Cgroup(c)
		}
	}
	return c.cg, c.cgOK
}

// cgroupAdmits is the cgroup part of a match.
func (c *Ctx) cgroupAdmits(want string) bool {
	cg, ok := c.Cgroup()
	return ok && netfilter.CgroupUnder(cg, want)
}

// cgroupValue is pkt.cgroup: the path, or nil when not known.
func (c *Ctx) cgroupValue() lua.LValue {
	if cg, ok := c.Cgroup(); ok {
		return lua.LString(cg)
	}
	return lua.LNil
}

// parseCgroup reads match.cgroup.
func parseCgroup(v lua.LValue) (string, error) {
	s, ok := v.(lua.LString)
	if !ok {
		return "", fmt.Errorf("want a cgroup path such as \"system.slice/nginx.service\", not %s", v.Type())
	}
	p, _, err := netfilter.CheckCgroupPath(string(s))
	return p, err
}

// checkCgroupHooks refuses a cgroup match on a hook whose packets have no
// local socket to ask.
func checkCgroupHooks(r *registration) error {
	if r.matcher == nil || r.matcher.m.Cgroup == "" {
		return nil
	}
	for _, h := range r.hooks {
		if h != Output && h != Postrouting {
			return fmt.Errorf("match: cgroup works on the output and postrouting hooks (locally generated packets), not %s", h)
		}
	}
	return nil
}

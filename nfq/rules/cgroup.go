package rules

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/google/nftables/expr"

	"github.com/luafw/luafw/netfilter"
	"github.com/luafw/luafw/nfq/cgroup"
)

// A Match's Cgroup becomes `socket cgroupv2 level N <id>`: the kernel
// compares the id of the packet's local socket's cgroup ancestor at level
// N (the number of components of the path) with the id the path had when
// the rules were built. The id is the inode number of the cgroup's
// directory under the cgroup2 mount, so the cgroup must exist when the
// rules are installed (nft refuses such a path too), and a cgroup removed
// and made again (a systemd service restarted) has a new id: the rule no
// longer matches it until the rules are built again (luafw reload).

// resolveCgroups returns rs with the ids of its matches' cgroups filled in
// (copies of the diversions and matches that have one).
func (rs Set) resolveCgroups() (Set, error) {
	var h *cgroup.Hierarchy
	defer func() {
		if h != nil {
			h.Close()
		}
	}()
	cloned := false
	for i, d := range rs.Diversions {
		if !slices.ContainsFunc(d.Matches, func(m Match) bool { return m.Cgroup != "" }) {
			continue
		}
		if !cloned {
			rs.Diversions, cloned = slices.Clone(rs.Diversions), true
		}
		ms := slices.Clone(d.Matches)
		for j := range ms {
			m := &ms[j]
			if m.Cgroup == "" {
				continue
			}
			p, level, err := netfilter.CheckCgroupPath(m.Cgroup)
			if err != nil {
				return rs, fmt.Errorf("diversion %d: match: %w", i, err)
			}
			if h == nil {
				if h, err = cgroup.OpenHierarchy(); err != nil {
					return rs, fmt.Errorf("diversion %d: match: cgroup %q: %w", i, p, err)
				}
			}
			id, err := cgroup.ID(h.Root, p)
			if err != nil {
				return rs, fmt.Errorf("diversion %d: match: %w", i, err)
			}
			m.Cgroup, m.cgroupLevel, m.cgroupID = p, level, id
		}
		rs.Diversions[i].Matches = ms
	}
	return rs, nil
}

// cgroupRule appends `socket cgroupv2 level N "PATH"` (the id resolved by
// resolveCgroups) to r.
func (m Match) cgroupRule(r *nftRuleIR) {
	if m.Cgroup == "" {
		return
	}
	r.add(fmt.Sprintf("socket cgroupv2 level %d %q", m.cgroupLevel, m.Cgroup),
		&expr.Socket{Key: expr.SocketKeyCgroupv2, Level: uint32(m.cgroupLevel), Register: nftReg},
		&expr.Cmp{Op: expr.CmpOpEq, Register: nftReg, Data: binary.NativeEndian.AppendUint64(nil, m.cgroupID)})
}

package netfilter

import (
	"errors"
	"fmt"
	"strings"
)

// Cgroup v2 paths as nftables' `socket cgroupv2 level N "PATH"` names
// them: relative to the cgroup2 root, N the number of components.

// CheckCgroupPath checks a cgroup path as scripts and rules give it: relative to
// the cgroup2 root, components separated by "/", no "." or ".." and no
// empty component; at most 4096 bytes. A leading "/" is accepted and
// dropped. It returns the clean path and its level (its number of
// components, nftables' `level`).
func CheckCgroupPath(p string) (string, int, error) {
	p = strings.TrimPrefix(p, "/")
	if p == "" {
		return "", 0, errors.New("want a cgroup path such as \"system.slice/nginx.service\", not the root")
	}
	if len(p) > 4096 {
		return "", 0, fmt.Errorf("cgroup path of %d bytes is longer than 4096", len(p))
	}
	parts := strings.Split(p, "/")
	for _, c := range parts {
		if c == "" || c == "." || c == ".." || strings.ContainsRune(c, 0) {
			return "", 0, fmt.Errorf("cgroup path %q: want components separated by single slashes, none of them \".\" or \"..\"", p)
		}
	}
	return p, len(parts), nil
}

// CgroupUnder reports whether the cgroup at path is want or below it: the
// engine's reading of `socket cgroupv2 level N "want"` (the socket's
// ancestor at want's level is want).
func CgroupUnder(path, want string) bool {
	return path == want || len(path) > len(want) && path[len(want)] == '/' && path[:len(want)] == want
}

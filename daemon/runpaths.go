package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultRunDir is where a daemon keeps its per-namespace lock, control
// socket and pidfile.
const DefaultRunDir = "/run/luafw"

// RunPaths are the files of the daemon instance of one network namespace.
// One daemon runs per namespace: the files are named by the namespace's
// inode, so daemons in different namespaces never meet, and a client run in
// a namespace (`ip netns exec NS luafw status`) finds that namespace's
// daemon.
type RunPaths struct {
	Dir    string
	Lock   string // flock'ed by the running instance
	Socket string // control socket (root only)
	Pid    string // pidfile, for signals
	NS     uint64 // the network namespace's inode
}

// PathsFor returns the instance files under dir for the namespace ns.
func PathsFor(dir string, ns uint64) RunPaths {
	base := filepath.Join(dir, "netns-"+strconv.FormatUint(ns, 10))
	return RunPaths{Dir: dir, Lock: base + ".lock", Socket: base + ".sock", Pid: base + ".pid", NS: ns}
}

// CurrentPaths returns the instance files of the calling thread's network
// namespace under dir.
func CurrentPaths(dir string) (RunPaths, error) {
	ns, err := NamespaceID()
	if err != nil {
		return RunPaths{}, err
	}
	return PathsFor(dir, ns), nil
}

// NamespaceID returns the inode of the calling thread's network namespace
// (what `readlink /proc/thread-self/ns/net` shows as net:[N]).
func NamespaceID() (uint64, error) {
	link, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		return 0, fmt.Errorf("daemon: network namespace: %w", err)
	}
	s := strings.TrimSuffix(strings.TrimPrefix(link, "net:["), "]")
	ns, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("daemon: network namespace: unexpected link %q", link)
	}
	return ns, nil
}

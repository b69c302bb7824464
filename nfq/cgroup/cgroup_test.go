package cgroup

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/luafw/luafw/netfilter"
)

func TestCheckPathAndUnder(t *testing.T) {
	for _, tc := range []struct {
		in    string
		out   string
		level int
		bad   bool
	}{
		{"system.slice/nginx.service", "system.slice/nginx.service", 2, false},
		{"/a", "a", 1, false},
		{"", "", 0, true},
		{"/", "", 0, true},
		{"a//b", "", 0, true},
		{"a/../b", "", 0, true},
		{"a/", "", 0, true},
	} {
		p, lvl, err := netfilter.CheckCgroupPath(tc.in)
		if (err != nil) != tc.bad || p != tc.out || lvl != tc.level {
			t.Errorf("CheckCgroupPath(%q) = %q, %d, %v", tc.in, p, lvl, err)
		}
	}
	for _, tc := range []struct {
		path, want string
		ok         bool
	}{
		{"a/b", "a/b", true}, {"a/b/c", "a/b", true}, {"a/bc", "a/b", false}, {"a", "a/b", false}, {"", "a", false},
	} {
		if netfilter.CgroupUnder(tc.path, tc.want) != tc.ok {
			t.Errorf("Under(%q, %q) = %v", tc.path, tc.want, !tc.ok)
		}
	}
}

// testCgroup makes a cgroup of the test's own below the cgroup2 mount and
// removes it at the end.
func testCgroup(t testing.TB) (root, rel string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes a cgroup")
	}
	root, err := Mount()
	if err != nil {
		t.Skip(err)
	}
	rel = fmt.Sprintf("luafw-cgtest-%d/inner", os.Getpid())
	if err := os.MkdirAll(filepath.Join(root, rel), 0o755); err != nil {
		t.Skipf("cannot make a cgroup: %v", err)
	}
	t.Cleanup(func() {
		os.Remove(filepath.Join(root, rel))
		os.Remove(filepath.Dir(filepath.Join(root, rel)))
	})
	return root, rel
}

// connectFrom runs a shell in the cgroup that connects to ln and stays;
// it returns the child's end of the connection, seen from ln.
func connectFrom(t testing.TB, root, rel string, ln net.Listener) netip.AddrPort {
	t.Helper()
	port := ln.Addr().(*net.TCPAddr).Port
	cmd := exec.Command("bash", "-c", fmt.Sprintf(`echo $$ > %s/cgroup.procs && exec 3<>/dev/tcp/127.0.0.1/%d && sleep 30`,
		filepath.Join(root, rel), port))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.RemoteAddr().(*net.TCPAddr).AddrPort()
}

// childConnection opens a resolver and a connection from a child in the
// cgroup to a listener of the test; it returns both ends.
func childConnection(t testing.TB, root, rel string) (r *Resolver, child, server netip.AddrPort) {
	t.Helper()
	r, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return r, connectFrom(t, root, rel, ln), ln.Addr().(*net.TCPAddr).AddrPort()
}

func TestLookupFindsTheSocketsCgroup(t *testing.T) {
	root, rel := testCgroup(t)
	r, child, server := childConnection(t, root, rel)
	path, ok, err := r.Lookup(6, child, server)
	if err != nil || !ok || path != rel {
		t.Fatalf("Lookup(child -> server) = %q, %v, %v; want %q", path, ok, err, rel)
	}
	// The server's side is this process' socket, in another cgroup.
	path, ok, err = r.Lookup(6, server, child)
	if err != nil || !ok || path == rel {
		t.Fatalf("Lookup(server -> child) = %q, %v, %v; want this process' cgroup", path, ok, err)
	}
	// No socket: not found, no error.
	if _, ok, err := r.Lookup(6, netip.MustParseAddrPort("127.0.0.1:1"), netip.MustParseAddrPort("127.0.0.1:2")); ok || err != nil {
		t.Fatalf("Lookup of no socket: %v, %v", ok, err)
	}
	id, err := ID(root, rel)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok, _ := r.Path(id); !ok || p != rel {
		t.Fatalf("Path(ID(%q)) = %q, %v", rel, p, ok)
	}
	if _, err := ID(root, rel+"-missing"); err == nil {
		t.Fatal("ID of a missing cgroup: no error")
	}
}

// BenchmarkLookup is the cost of pkt.cgroup on the daemon's path: one
// sock_diag request and reply, the path from the cache.
func BenchmarkLookup(b *testing.B) {
	root, rel := testCgroup(b)
	r, child, server := childConnection(b, root, rel)
	for b.Loop() {
		if _, ok, err := r.Lookup(6, child, server); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

// TestDetachedHierarchy: in a mount namespace without cgroup2 (as under
// `ip netns exec`), the resolver mounts its own, detached, and finds the
// same ids and paths.
func TestDetachedHierarchy(t *testing.T) {
	root, rel := testCgroup(t)
	want, err := ID(root, rel)
	if err != nil {
		t.Fatal(err)
	}
	// A child in a mount namespace of its own with /sys/fs/cgroup hidden
	// runs this test binary's helper mode.
	cmd := exec.Command("unshare", "-m", "sh", "-c", `umount -l "$1" && exec "$0" -test.run=TestDetachedHelper`, os.Args[0], root)
	cmd.Env = append(os.Environ(), "LUAFW_CGROUP_HELPER="+rel)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	if got := fmt.Sprintf("id=%d path=%s", want, rel); !strings.Contains(string(out), got) {
		t.Fatalf("helper said\n%s\nwant %q", out, got)
	}
}

func TestDetachedHelper(t *testing.T) {
	rel := os.Getenv("LUAFW_CGROUP_HELPER")
	if rel == "" {
		t.Skip("run by TestDetachedHierarchy")
	}
	if _, err := Mount(); err == nil {
		t.Fatal("cgroup2 still mounted in the helper's namespace")
	}
	r, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	id, err := ID(r.Root(), rel)
	if err != nil {
		t.Fatal(err)
	}
	p, ok, err := r.Path(id)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	fmt.Printf("id=%d path=%s\n", id, p)
}

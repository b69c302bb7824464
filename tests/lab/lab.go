package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns` keeps its named namespaces.
const netnsDir = "/run/netns"

// ErrUnavailable is returned by [Start] when this machine cannot run a lab
// (not root, no `ip`, namespaces refused). [New] skips the test on it.
var ErrUnavailable = errors.New("lab: network namespaces unavailable")

// ErrWrongNamespace is returned when a guard finds that it is not inside the
// namespace it expects; the command or function was not run.
var ErrWrongNamespace = errors.New("lab: refusing: not inside the expected namespace")

// Options configures a lab.
type Options struct {
	// Prefix starts every namespace name: letters and digits, at most 12.
	// Default "lfw".
	Prefix string
	// NoIPv6 leaves IPv6 off (disabled in all three namespaces). By
	// default the lab has IPv6 addresses and routes next to IPv4.
	NoIPv6 bool
	// Iptables is the iptables command whose "-save" the counter readers use:
	// "iptables" (default; the nft variant on Debian) or "iptables-legacy".
	// The IPv6 readers use the matching ip6tables command.
	Iptables string
}

var prefixRE = regexp.MustCompile(`^[A-Za-z0-9]{1,12}$`)

func (o Options) withDefaults() (Options, error) {
	if o.Prefix == "" {
		o.Prefix = "lfw"
	}
	if !prefixRE.MatchString(o.Prefix) {
		return o, fmt.Errorf("lab: prefix %q: want 1-12 letters or digits", o.Prefix)
	}
	switch o.Iptables {
	case "":
		o.Iptables = "iptables"
	case "iptables", "iptables-legacy", "iptables-nft":
	default:
		return o, fmt.Errorf("lab: Options.Iptables %q: want iptables, iptables-nft or iptables-legacy", o.Iptables)
	}
	return o, nil
}

// Lab is one client/router/server topology. Its methods are safe for
// concurrent use.
type Lab struct {
	// Client, Router and Server are the three namespaces.
	Client, Router, Server *NS

	opts  Options
	ip    string          // path of the ip command
	host  map[uint64]bool // netns inodes of the machine's own namespace(s)
	id    string          // random part of the names
	mu    sync.Mutex      // guards the fields below
	owned []*NS           // namespaces created so far, in creation order
	stop  []io.Closer     // servers to stop on Close
	done  bool            // Close has run
}

// New builds a lab for a test. It skips the test when the machine cannot run
// one (not root, `ip netns` unusable), fails it on any other setup error
// (after removing what was built), and registers Close with t.Cleanup, so the
// namespaces go away even when the test fails.
func New(t testing.TB, opts Options) *Lab {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := Start(ctx, opts)
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatalf("lab: setup: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("lab: close: %v", err)
		}
	})
	return l
}

// Start builds a lab outside of a test. The caller must Close it. On error
// nothing is left behind; errors.Is(err, ErrUnavailable) tells that the
// machine cannot run a lab at all.
func Start(ctx context.Context, opts Options) (*Lab, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if euid := os.Geteuid(); euid != 0 {
		return nil, fmt.Errorf("%w: needs root (euid %d)", ErrUnavailable, euid)
	}
	ipPath, err := exec.LookPath("ip")
	if err != nil {
		return nil, fmt.Errorf("%w: iproute2 `ip` not found: %v", ErrUnavailable, err)
	}
	host, err := hostInodes()
	if err != nil {
		return nil, err
	}
	if err := CleanupStale(opts.Prefix); err != nil {
		slog.Warn("lab: removing stale namespaces", "prefix", opts.Prefix, "err", err)
	}
	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("lab: random id: %w", err)
	}
	l := &Lab{opts: opts, ip: ipPath, host: host, id: hex.EncodeToString(rnd[:])}
	if err := l.build(ctx); err != nil {
		if cerr := l.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("lab: cleaning up after failed setup: %w", cerr))
		}
		return nil, err
	}
	return l, nil
}

// Options returns the options the lab runs with, defaults filled in.
func (l *Lab) Options() Options { return l.opts }

// Namespaces returns the lab's namespaces (client, router, server).
func (l *Lab) Namespaces() []*NS { return []*NS{l.Client, l.Router, l.Server} }

// build creates the namespaces, links, addresses and routes.
func (l *Lab) build(ctx context.Context) error {
	v6 := !l.opts.NoIPv6
	iface := func(name, a4, a6 string) Iface {
		ifc := Iface{Name: name, Addr4: pfx(a4)}
		if v6 {
			ifc.Addr6 = pfx(a6)
		}
		ip := ifc.Addr4.Addr().As4()
		ifc.MAC = net.HardwareAddr{0x02, 0x00, ip[0], ip[1], ip[2], ip[3]}
		return ifc
	}
	c0 := iface("c0", "10.201.1.2/24", "fd00:201:1::2/64")
	r0 := iface("r0", "10.201.1.1/24", "fd00:201:1::1/64")
	r1 := iface("r1", "10.201.2.1/24", "fd00:201:2::1/64")
	s0 := iface("s0", "10.201.2.2/24", "fd00:201:2::2/64")
	c0.Peer, r0.Peer, r1.Peer, s0.Peer = "r0", "c0", "s0", "r1"
	specs := []struct {
		role   string
		ifaces []Iface
		dst    **NS
	}{
		{"client", []Iface{c0}, &l.Client},
		{"router", []Iface{r0, r1}, &l.Router},
		{"server", []Iface{s0}, &l.Server},
	}
	for _, s := range specs {
		n, err := l.addNS(ctx, s.role, s.ifaces)
		if err != nil {
			return err
		}
		*s.dst = n
	}

	// Per-namespace IPv6 settings before any link exists, so new links
	// inherit them (no duplicate address detection, no router adverts).
	for _, n := range l.Namespaces() {
		sysctls := [][2]string{{"net.ipv6.conf.all.disable_ipv6", "1"}, {"net.ipv6.conf.default.disable_ipv6", "1"}}
		if v6 {
			sysctls = [][2]string{
				{"net.ipv6.conf.all.accept_dad", "0"}, {"net.ipv6.conf.default.accept_dad", "0"},
				{"net.ipv6.conf.all.accept_ra", "0"}, {"net.ipv6.conf.default.accept_ra", "0"},
			}
		}
		if n == l.Router {
			sysctls = append(sysctls, [2]string{"net.ipv4.ip_forward", "1"})
			if v6 {
				sysctls = append(sysctls, [2]string{"net.ipv6.conf.all.forwarding", "1"})
			}
		}
		for _, kv := range sysctls {
			if err := n.Sysctl(kv[0], kv[1]); err != nil {
				return err
			}
		}
	}

	// veth pairs are created from the client and the server side with the
	// peer placed directly in the router: no link ever exists in the
	// machine's own namespace.
	for _, pair := range [][2]Iface{{c0, r0}, {s0, r1}} {
		n := l.Client
		if pair[0].Name == "s0" {
			n = l.Server
		}
		if _, err := n.Run(ctx, "ip", "link", "add", pair[0].Name, "address", pair[0].MAC.String(), "type", "veth",
			"peer", "name", pair[1].Name, "address", pair[1].MAC.String(), "netns", l.Router.Name); err != nil {
			return err
		}
	}

	// Addresses, routes, and permanent neighbour entries: no ARP or NDP
	// delays (packets queued, then dropped, while a neighbour resolves)
	// and no ARP/NDP noise in counters.
	byName := map[string]Iface{"c0": c0, "r0": r0, "r1": r1, "s0": s0}
	for _, n := range l.Namespaces() {
		var b strings.Builder
		b.WriteString("ip link set lo up\n")
		for _, ifc := range n.Ifaces {
			peer := byName[ifc.Peer]
			fmt.Fprintf(&b, "ip link set %s up\n", ifc.Name)
			fmt.Fprintf(&b, "ip addr add %s dev %s\n", ifc.Addr4, ifc.Name)
			fmt.Fprintf(&b, "ip neigh replace %s lladdr %s dev %s nud permanent\n", peer.Addr4.Addr(), peer.MAC, ifc.Name)
			if v6 {
				fmt.Fprintf(&b, "ip -6 addr add %s dev %s nodad\n", ifc.Addr6, ifc.Name)
				fmt.Fprintf(&b, "ip -6 neigh replace %s lladdr %s dev %s nud permanent\n", peer.Addr6.Addr(), peer.MAC, ifc.Name)
			}
		}
		if n != l.Router {
			gw := byName[n.Ifaces[0].Peer]
			fmt.Fprintf(&b, "ip route add default via %s\n", gw.Addr4.Addr())
			if v6 {
				fmt.Fprintf(&b, "ip -6 route add default via %s\n", gw.Addr6.Addr())
			}
		}
		if _, err := n.Shell(ctx, b.String()); err != nil {
			return err
		}
	}
	return l.waitLinksUp(ctx)
}

// waitLinksUp waits (up to 10 s) until every lab interface is
// operationally up. The kernel brings a link's queueing discipline up from
// a work queue after `ip link set up`; until then what is sent on it is
// dropped, which on a loaded machine lost a test's first UDP datagrams.
func (l *Lab) waitLinksUp(ctx context.Context) error {
	deadline := time.Now().Add(10 * time.Second)
	for _, n := range l.Namespaces() {
		for _, ifc := range n.Ifaces {
			for {
				out, err := n.Run(ctx, "ip", "-o", "link", "show", "dev", ifc.Name)
				if err != nil {
					return err
				}
				if strings.Contains(out, " state UP ") {
					break
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("lab: [%s] %s not up after 10s: %s", n.Name, ifc.Name, strings.TrimSpace(out))
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(5 * time.Millisecond):
				}
			}
		}
	}
	return nil
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// addNS creates one named namespace and records its inode.
func (l *Lab) addNS(ctx context.Context, role string, ifaces []Iface) (*NS, error) {
	name := fmt.Sprintf("%s-%d-%s-%s", l.opts.Prefix, os.Getpid(), l.id, role)
	l.mu.Lock()
	if l.done {
		l.mu.Unlock()
		return nil, errors.New("lab: closed during setup")
	}
	l.mu.Unlock()

	out, err := exec.CommandContext(ctx, l.ip, "netns", "add", name).CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		err = fmt.Errorf("lab: ip netns add %s: %w: %s", name, err, msg)
		if strings.Contains(msg, "not permitted") || strings.Contains(msg, "Permission denied") {
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return nil, err
	}
	ino, err := nsInode(netnsDir + "/" + name)
	if err != nil {
		// Created but unreadable: still ours to remove.
		_ = unix.Unmount(netnsDir+"/"+name, unix.MNT_DETACH)
		_ = os.Remove(netnsDir + "/" + name)
		return nil, fmt.Errorf("lab: namespace %s: %w", name, err)
	}
	n := &NS{Name: name, Role: role, Ifaces: ifaces, lab: l, inode: ino}
	l.mu.Lock()
	l.owned = append(l.owned, n)
	l.mu.Unlock()
	if l.host[ino] {
		return nil, fmt.Errorf("lab: namespace %s has the machine's own netns inode %d: refusing", name, ino)
	}
	for _, o := range l.owned[:len(l.owned)-1] {
		if o.inode == ino {
			return nil, fmt.Errorf("lab: namespaces %s and %s share inode %d", o.Name, name, ino)
		}
	}
	if len(ifaces) > 0 {
		n.Addr4 = ifaces[0].Addr4.Addr()
		n.Addr6 = ifaces[0].Addr6.Addr()
	}
	return n, nil
}

// track registers a server or a started command to stop on Close.
func (l *Lab) track(c io.Closer) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return errors.New("lab: closed")
	}
	l.stop = append(l.stop, c)
	return nil
}

func (l *Lab) closed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.done
}

// Close stops the lab's servers, kills every process still inside its
// namespaces and deletes the namespaces (their veths go with them). It is
// idempotent; later calls return nil.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.done {
		l.mu.Unlock()
		return nil
	}
	l.done = true
	stop, owned := l.stop, l.owned
	l.stop = nil
	l.mu.Unlock()

	for i := len(stop) - 1; i >= 0; i-- {
		_ = stop[i].Close() // servers; their errors say only "already closed"
	}
	var errs []error
	for i := len(owned) - 1; i >= 0; i-- {
		if err := removeNS(owned[i].Name, owned[i].inode, l.host); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// CleanupStale removes namespaces named "PREFIX-PID-RANDOM-ROLE" (the labs'
// own pattern) whose owning process PID no longer exists: those left by
// crashed runs. Labs of live processes, this one included, are left alone.
func CleanupStale(prefix string) error {
	if !prefixRE.MatchString(prefix) {
		return fmt.Errorf("lab: prefix %q: want 1-12 letters or digits", prefix)
	}
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("lab: listing %s: %w", netnsDir, err)
	}
	host, err := hostInodes()
	if err != nil {
		return err
	}
	nameRE := regexp.MustCompile(`^` + prefix + `-([0-9]+)-[0-9a-f]{6}-(client|router|server)$`)
	var errs []error
	for _, e := range entries {
		m := nameRE.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || pidAlive(pid) {
			continue
		}
		if err := removeNS(e.Name(), 0, host); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// removeNS kills the processes inside a named namespace and deletes the
// name (what `ip netns del` does). want, when not 0, is the inode the name
// must still have.
func removeNS(name string, want uint64, host map[uint64]bool) error {
	path := netnsDir + "/" + name
	ino, err := nsInode(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		// Not a namespace mount (a failed `ip netns add`): just the file.
		if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			return fmt.Errorf("lab: removing %s: %w (stat: %v)", path, rerr, err)
		}
		return nil
	}
	if want != 0 && ino != want {
		return fmt.Errorf("lab: namespace %s now has inode %d, not %d: leaving it alone", name, ino, want)
	}
	if host[ino] {
		return fmt.Errorf("lab: %s is the machine's own namespace (inode %d): refusing to touch it", name, ino)
	}
	if err := killInside(ino); err != nil {
		return fmt.Errorf("lab: namespace %s: %w", name, err)
	}
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("lab: unmounting %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("lab: removing %s: %w", path, err)
	}
	return nil
}

// killInside sends SIGKILL to every process (other than this one) whose
// network namespace has inode ino.
func killInside(ino uint64) error {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return fmt.Errorf("listing /proc: %w", err)
	}
	self := os.Getpid()
	want := fmt.Sprintf("net:[%d]", ino)
	var errs []error
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		link, err := os.Readlink("/proc/" + e.Name() + "/ns/net")
		if err != nil || link != want {
			continue // gone, or a kernel thread
		}
		if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("killing pid %d: %w", pid, err))
		}
	}
	return errors.Join(errs...)
}

// nsInode returns the inode of a namespace file (following links and bind
// mounts).
func nsInode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	return st.Ino, nil
}

// hostInodes returns the netns inodes of this process and of pid 1: the
// machine's own namespace(s), never to be acted in.
func hostInodes() (map[uint64]bool, error) {
	self, err := nsInode("/proc/self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("lab: own network namespace: %w", err)
	}
	host := map[uint64]bool{self: true}
	if init, err := nsInode("/proc/1/ns/net"); err == nil {
		host[init] = true
	}
	return host, nil
}

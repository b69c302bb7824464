package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// guardExit is the exit status of the guard when it refuses to run.
const guardExit = 97

// NS is one namespace of a lab.
type NS struct {
	// Name is the namespace name, as in `ip netns list`.
	Name string
	// Role is "client", "router" or "server".
	Role string
	// Addr4 and Addr6 are the primary addresses (the first interface's; on
	// the router the client-side one). Addr6 is invalid without IPv6.
	Addr4, Addr6 netip.Addr
	// Ifaces are the namespace's veth interfaces and their addresses.
	Ifaces []Iface

	lab   *Lab
	inode uint64 // netns inode recorded at creation
}

// Iface is a veth interface inside a namespace.
type Iface struct {
	Name         string
	Addr4, Addr6 netip.Prefix // Addr6 is invalid without IPv6
	// MAC is fixed: 02:00 then the four bytes of the IPv4 address.
	MAC net.HardwareAddr
	// Peer is the name of the veth at the other end (in the next
	// namespace). Neighbour entries for the peer's addresses are permanent.
	Peer string
}

func (n *NS) String() string { return n.Name }

// Inode returns the namespace's netns inode recorded at creation.
func (n *NS) Inode() uint64 { return n.inode }

func (n *NS) usable() error {
	if n == nil || n.lab == nil {
		return errors.New("lab: nil namespace")
	}
	if n.lab.closed() {
		return fmt.Errorf("lab: namespace %s: lab closed", n.Name)
	}
	return nil
}

// guardScript refuses (exit 97) unless it runs in the namespace whose inode
// was recorded, then execs its arguments.
func (n *NS) guardScript() string {
	return fmt.Sprintf(`[ "$(stat -L -c %%i /proc/self/ns/net)" = "%d" ] || { echo "lab: refusing: not inside namespace %s" >&2; exit %d; }; exec "$@"`,
		n.inode, n.Name, guardExit)
}

// Command returns a guarded command that runs name with args inside the
// namespace, for long-running processes (a daemon under test, a packet
// generator). The caller starts and waits for it; the process is in its own
// process group, which is killed when ctx is done, and Lab.Close kills any
// process still inside the lab's namespaces. A refused command exits with
// status 97 and "lab: refusing" on stderr without having run.
func (n *NS) Command(ctx context.Context, name string, args ...string) (*exec.Cmd, error) {
	if err := n.usable(); err != nil {
		return nil, err
	}
	full := append([]string{"netns", "exec", n.Name, "sh", "-c", n.guardScript(), "lab-guard", name}, args...)
	cmd := exec.CommandContext(ctx, n.lab.ip, full...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return unix.Kill(-cmd.Process.Pid, unix.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	// Close kills the command's process group even when it has not entered
	// the namespace yet (still in `ip netns exec`), which the scan of the
	// namespace's processes would miss.
	if err := n.lab.track(procGroup{cmd}); err != nil {
		return nil, err
	}
	return cmd, nil
}

// Run runs name with args inside the namespace through the guard and returns
// its standard output. The error names the namespace and the command line
// and carries the standard error; it wraps ErrWrongNamespace when the guard
// refused (the command did not run).
func (n *NS) Run(ctx context.Context, name string, args ...string) (string, error) {
	cmd, err := n.Command(ctx, name, args...)
	if err != nil {
		return "", err
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if err == nil {
		return stdout.String(), nil
	}
	line := quoteArgs(append([]string{name}, args...))
	msg := strings.TrimSpace(stderr.String())
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == guardExit && strings.Contains(msg, "lab: refusing") {
		return stdout.String(), fmt.Errorf("%w %s (recorded inode %d): did not run %s", ErrWrongNamespace, n.Name, n.inode, line)
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (%w)", err, ctx.Err())
	}
	return stdout.String(), fmt.Errorf("lab: [%s] %s: %w: %s", n.Name, line, err, msg)
}

// Shell runs script with `sh -e` inside the namespace (guarded like Run), so
// the first failing line stops it. Use it for rule setup in tests.
func (n *NS) Shell(ctx context.Context, script string) (string, error) {
	return n.Run(ctx, "sh", "-e", "-c", script)
}

func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n\"'\\$;&|<>*?()") {
			a = strconv.Quote(a)
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

// Do runs fn on an OS thread switched into the namespace, after checking
// that the thread really is in it (its netns inode equals the recorded one),
// and switches the thread back afterwards, checking that too. A thread that
// cannot be switched back is never reused (it ends with its goroutine).
//
// fn runs on its own goroutine: it must return errors rather than call
// t.Fatal, and goroutines it starts are NOT in the namespace. Sockets it
// opens stay in the namespace for their whole life, so servers and clients
// can be plain Go net code (see Listen, Dial). A panic in fn is returned as
// an error.
func (n *NS) Do(fn func() error) error {
	if err := n.usable(); err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Deferred so that it also runs when fn calls runtime.Goexit.
		res := doResult{err: errGoexit, restored: true}
		defer func() {
			if res.restored {
				runtime.UnlockOSThread()
			} // else: the thread exits with this goroutine
			errc <- res.err
		}()
		n.doLocked(fn, &res)
	}()
	return <-errc
}

// errGoexit is what Do returns when fn ends its goroutine (t.FailNow).
var errGoexit = errors.New("lab: Do: function exited its goroutine (runtime.Goexit, t.FailNow?); return an error instead")

type doResult struct {
	err      error
	restored bool // the thread is back in its original namespace
}

// doLocked runs fn inside the namespace on the current, locked thread.
func (n *NS) doLocked(fn func() error, res *doResult) {
	fail := func(err error) { res.err = err }
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		fail(fmt.Errorf("lab: Do: opening own namespace: %w", err))
		return
	}
	defer unix.Close(orig)
	var st unix.Stat_t
	if err := unix.Fstat(orig, &st); err != nil {
		fail(fmt.Errorf("lab: Do: own namespace: %w", err))
		return
	}
	origIno := st.Ino

	path := netnsDir + "/" + n.Name
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		fail(fmt.Errorf("lab: Do: opening namespace %s: %w", n.Name, err))
		return
	}
	defer unix.Close(target)
	if err := unix.Fstat(target, &st); err != nil {
		fail(fmt.Errorf("lab: Do: namespace %s: %w", n.Name, err))
		return
	}
	if st.Ino != n.inode || n.lab.host[st.Ino] {
		fail(fmt.Errorf("%w %s: %s has inode %d, recorded %d; did not run", ErrWrongNamespace, n.Name, path, st.Ino, n.inode))
		return
	}

	// From here on the thread may be elsewhere: restore and check it on
	// every way out, fn's Goexit included.
	res.restored = false
	defer func() {
		if unix.Setns(orig, unix.CLONE_NEWNET) == nil && threadNetns() == origIno {
			res.restored = true
			return
		}
		res.err = errors.Join(res.err, fmt.Errorf("lab: Do: could not return the thread from %s to its namespace (inode %d); thread discarded", n.Name, origIno))
	}()
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		fail(fmt.Errorf("lab: Do: entering %s: %w", n.Name, err))
		return
	}
	if got := threadNetns(); got != n.inode {
		fail(fmt.Errorf("%w %s: thread is in inode %d after setns, want %d; did not run", ErrWrongNamespace, n.Name, got, n.inode))
		return
	}
	res.err = runRecover(fn)
}

func runRecover(fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("lab: Do: function panicked: %v\n%s", p, debug.Stack())
		}
	}()
	return fn()
}

// threadNetns returns the netns inode of the calling thread, 0 if unknown.
func threadNetns() uint64 {
	ino, err := nsInode("/proc/thread-self/ns/net")
	if err != nil {
		return 0
	}
	return ino
}

var sysctlKeyRE = regexp.MustCompile(`^net[./][A-Za-z0-9_./-]+$`)

// sysctlPath maps "net.ipv4.ip_forward" (or "net/ipv4/ip_forward", needed
// when an interface name has a dot) to its /proc/sys path. Only net.* keys
// are accepted: the others are not per-namespace.
func sysctlPath(key string) (string, error) {
	if !sysctlKeyRE.MatchString(key) || strings.Contains(key, "..") {
		return "", fmt.Errorf("lab: sysctl key %q: only net.* keys (namespaced) are allowed", key)
	}
	if !strings.Contains(key, "/") {
		key = strings.ReplaceAll(key, ".", "/")
	}
	return "/proc/sys/" + key, nil
}

// Sysctl sets a net.* sysctl inside the namespace.
func (n *NS) Sysctl(key, value string) error {
	path, err := sysctlPath(key)
	if err != nil {
		return err
	}
	return n.Do(func() error {
		if err := os.WriteFile(path, []byte(value), 0); err != nil {
			return fmt.Errorf("lab: [%s] sysctl %s=%s: %w", n.Name, key, value, err)
		}
		return nil
	})
}

// SysctlValue reads a net.* sysctl inside the namespace.
func (n *NS) SysctlValue(key string) (string, error) {
	path, err := sysctlPath(key)
	if err != nil {
		return "", err
	}
	var v string
	err = n.Do(func() error {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("lab: [%s] sysctl %s: %w", n.Name, key, err)
		}
		v = strings.TrimSpace(string(b))
		return nil
	})
	return v, err
}

// checkAddr accepts "IP:port" with a literal IP, or ":port" when host may be
// empty (listening on all of the namespace's addresses). Names are refused:
// nothing here resolves them.
func checkAddr(addr string, emptyHostOK bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("lab: address %q: %w", addr, err)
	}
	if host == "" && emptyHostOK {
		return nil
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return fmt.Errorf("lab: address %q: want a literal IP address (no names): %w", addr, err)
	}
	return nil
}

// Listen opens a stream listener ("tcp", "tcp4", "tcp6") inside the
// namespace; addr is "IP:port" or ":port" (port 0 picks one).
func (n *NS) Listen(network, addr string) (net.Listener, error) {
	if err := checkAddr(addr, true); err != nil {
		return nil, err
	}
	var ln net.Listener
	err := n.Do(func() (err error) {
		ln, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: [%s] listen %s %s: %w", n.Name, network, addr, err)
	}
	return ln, nil
}

// ListenPacket opens a packet socket ("udp", "udp4", "udp6", "ip4:icmp", ...)
// inside the namespace.
func (n *NS) ListenPacket(network, addr string) (net.PacketConn, error) {
	if strings.HasPrefix(network, "udp") {
		if err := checkAddr(addr, true); err != nil {
			return nil, err
		}
	} else if addr != "" {
		if _, err := netip.ParseAddr(addr); err != nil {
			return nil, fmt.Errorf("lab: address %q: want a literal IP address: %w", addr, err)
		}
	}
	var pc net.PacketConn
	err := n.Do(func() (err error) {
		pc, err = net.ListenPacket(network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: [%s] listen %s %s: %w", n.Name, network, addr, err)
	}
	return pc, nil
}

// Dial connects from inside the namespace to addr, "IP:port" with a literal
// IP ("tcp", "udp" and their 4/6 variants).
func (n *NS) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if err := checkAddr(addr, false); err != nil {
		return nil, err
	}
	var c net.Conn
	err := n.Do(func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: [%s] dial %s %s: %w", n.Name, network, addr, err)
	}
	return c, nil
}

// procGroup kills a started command's process group when the lab closes.
type procGroup struct{ cmd *exec.Cmd }

func (p procGroup) Close() error {
	if p.cmd.Process == nil || p.cmd.ProcessState != nil {
		return nil
	}
	return unix.Kill(-p.cmd.Process.Pid, unix.SIGKILL)
}

package cgroup

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// sock_diag's constants (linux/inet_diag.h).
const (
	inetDiagCgroupID = 21 // INET_DIAG_CGROUP_ID: u64
	inetDiagNoCookie = ^uint32(0)
	reqLen           = 56 // struct inet_diag_req_v2
	msgLen           = 72 // struct inet_diag_msg
	rewalkEvery      = time.Second
)

// Resolver finds the cgroup of local sockets. It is opened in the calling
// thread's network namespace (sock_diag sees that namespace's sockets)
// and is safe for concurrent use; calls are serialized.
type Resolver struct {
	h    *Hierarchy
	root string
	mu   sync.Mutex
	conn *netlink.Conn
	// paths maps cgroup ids to paths below root; refilled by a walk of
	// the hierarchy when an id is missing, at most every rewalkEvery.
	paths  map[uint64]string
	walked time.Time
}

// Open opens a sock_diag socket and finds the cgroup2 mount.
func Open() (*Resolver, error) {
	h, err := OpenHierarchy()
	if err != nil {
		return nil, err
	}
	c, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, nil)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("cgroup: sock_diag: %w", err)
	}
	return &Resolver{h: h, root: h.Root, conn: c, paths: map[uint64]string{}}, nil
}

// Close closes the socket and the hierarchy.
func (r *Resolver) Close() error {
	r.h.Close()
	return r.conn.Close()
}

// Root is the cgroup2 mount the paths are relative to.
func (r *Resolver) Root() string { return r.root }

// Lookup returns the cgroup path (below the cgroup2 root, "" for the root
// itself) of the local socket that sends from src to dst over proto (TCP
// or UDP); ok is false when there is no such socket (a forwarded packet,
// a socket already gone).
func (r *Resolver) Lookup(proto uint8, src, dst netip.AddrPort) (path string, ok bool, err error) {
	id, ok, err := r.socketCgroup(proto, src, dst)
	if err != nil || !ok {
		return "", false, err
	}
	return r.Path(id)
}

// socketCgroup asks sock_diag for the socket of the 5-tuple and returns its
// cgroup id.
func (r *Resolver) socketCgroup(proto uint8, src, dst netip.AddrPort) (uint64, bool, error) {
	if proto != unix.IPPROTO_TCP && proto != unix.IPPROTO_UDP {
		return 0, false, nil
	}
	fam := byte(unix.AF_INET)
	if src.Addr().Is6() && !src.Addr().Is4In6() {
		fam = unix.AF_INET6
	}
	req := make([]byte, reqLen)
	req[0], req[1] = fam, proto
	binary.LittleEndian.PutUint32(req[4:], ^uint32(0)) // every state
	binary.BigEndian.PutUint16(req[8:], src.Port())
	binary.BigEndian.PutUint16(req[10:], dst.Port())
	putAddr(req[12:28], src.Addr())
	putAddr(req[28:44], dst.Addr())
	binary.LittleEndian.PutUint32(req[48:], inetDiagNoCookie)
	binary.LittleEndian.PutUint32(req[52:], inetDiagNoCookie)
	r.mu.Lock()
	msgs, err := r.conn.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.SOCK_DIAG_BY_FAMILY, Flags: netlink.Request},
		Data:   req,
	})
	r.mu.Unlock()
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return 0, false, nil
		}
		return 0, false, fmt.Errorf("cgroup: sock_diag: %w", err)
	}
	for _, m := range msgs {
		if len(m.Data) < msgLen {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[msgLen:])
		if err != nil {
			return 0, false, fmt.Errorf("cgroup: sock_diag reply: %w", err)
		}
		for ad.Next() {
			if ad.Type() == inetDiagCgroupID {
				return ad.Uint64(), true, nil
			}
		}
	}
	return 0, false, nil
}

func putAddr(b []byte, a netip.Addr) {
	if a.Is4() || a.Is4In6() {
		v := a.Unmap().As4()
		copy(b, v[:])
		return
	}
	v := a.As16()
	copy(b, v[:])
}

// Path returns the path of the cgroup with the given id, walking the
// hierarchy again when the id is new (a cgroup made since the last walk).
func (r *Resolver) Path(id uint64) (string, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.paths[id]; ok {
		return p, true, nil
	}
	if time.Since(r.walked) < rewalkEvery {
		return "", false, nil
	}
	r.walked = time.Now()
	paths := map[uint64]string{}
	// The trailing slash follows a root that is a link (a detached
	// mount's /proc/self/fd/N).
	err := filepath.WalkDir(r.root+"/", func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil // a cgroup removed during the walk
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(r.root, p)
		if rel == "." {
			rel = ""
		}
		paths[fi.Sys().(*syscall.Stat_t).Ino] = rel
		return nil
	})
	if err != nil {
		return "", false, fmt.Errorf("cgroup: walking %s: %w", r.root, err)
	}
	r.paths = paths
	p, ok := paths[id]
	return p, ok, nil
}

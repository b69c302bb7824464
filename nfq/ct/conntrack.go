package ct

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/luafw/luafw/netfilter"
)

// ErrNotFound is returned when the kernel has no conntrack entry for a tuple.
// A new connection's entry only becomes visible once its first packet has
// left the hook that created it (the entry is "confirmed").
var ErrNotFound = errors.New("conntrack entry not found")

// ErrNoLabelSpace is returned when an update sets labels on an entry without
// label storage (see RuleSet.CTLabels).
var ErrNoLabelSpace = errors.New("conntrack entry has no label storage (install the rules with CTLabels before the connection starts)")

// Tuple identifies a conntrack entry by the tuple of one of its packets, in
// either direction. For TCP, UDP, SCTP, DCCP and UDP-Lite the ports are the
// transport ports; for ICMP and ICMPv6 SPort is the echo identifier and DPort
// is type<<8|code; other protocols ignore the ports.
type Tuple struct {
	Proto    uint8
	Src, Dst netip.Addr
	SPort    uint16
	DPort    uint16
}

// Update is a change to a conntrack entry; only fields whose Set* flag is
// true are changed.
type Update struct {
	// Mark replaces the bits MarkMask selects (MarkMask 0 means all bits).
	Mark, MarkMask uint32
	SetMark        bool
	// Timeout is the entry's new remaining lifetime in seconds.
	Timeout    uint32
	SetTimeout bool
	// Labels replaces the label bits LabelsMask selects (LabelsMask zero
	// means "set the bits of Labels", leaving the others). Bit n is label n:
	// Labels[n/64] bit n%64.
	Labels, LabelsMask [2]uint64
	SetLabels          bool
}

// Entry is what Get reads from a conntrack entry.
type Entry struct {
	Mark    uint32
	Labels  [2]uint64
	Status  uint32 // IPS_* bits
	Timeout uint32 // remaining seconds
	// TCPState is the TCP_CONNTRACK_* state (3 established), 0 for others.
	TCPState uint8
	// Reply tells that the tuple asked for is the entry's reply direction.
	Reply bool
}

// State returns the `ct state` (netfilter.CTNew, CTEstablished or
// CTRelated) that the kernel gives the next packet with the looked-up tuple.
func (e Entry) State() netfilter.CTState {
	switch {
	case e.Reply || e.Status&uint32(conntrack.StatusSeenReply) != 0:
		return netfilter.CTEstablished
	case e.Status&uint32(conntrack.StatusExpected) != 0:
		return netfilter.CTRelated
	default:
		return netfilter.CTNew
	}
}

// Conn is a ctnetlink socket in the network namespace it was opened in.
// It is safe for concurrent use; calls are serialized, so open one per
// goroutine for parallel lookups.
type Conn struct {
	mu   sync.Mutex
	fd   int
	seq  uint32
	wbuf []byte
	rbuf []byte
	errs []error // per-message results of the last batch
}

// ctnetlink message types and attributes (linux/netfilter/nfnetlink_conntrack.h).
const (
	msgNew = unix.NFNL_SUBSYS_CTNETLINK << 8   // IPCTNL_MSG_CT_NEW (0)
	msgGet = unix.NFNL_SUBSYS_CTNETLINK<<8 | 1 // IPCTNL_MSG_CT_GET

	ctaTupleOrig    = 1
	ctaStatus       = 3
	ctaProtoInfo    = 4
	ctaTimeout      = 7
	ctaMark         = 8
	ctaMarkMask     = 21
	ctaLabels       = 22
	ctaLabelsMask   = 23
	ctaTupleIP      = 1
	ctaTupleProto   = 2
	ctaIPv4Src      = 1
	ctaIPv4Dst      = 2
	ctaIPv6Src      = 3
	ctaIPv6Dst      = 4
	ctaProtoNum     = 1
	ctaProtoSPort   = 2
	ctaProtoDPort   = 3
	ctaICMPID       = 4
	ctaICMPType     = 5
	ctaICMPCode     = 6
	ctaICMPv6ID     = 7
	ctaICMPv6Type   = 8
	ctaICMPv6Code   = 9
	ctaProtoInfoTCP = 1
	ctaTCPState     = 1

	nlaNested = unix.NLA_F_NESTED
	rcvBuf    = 4 << 20
	// batchMax bounds the updates sent in one sendmsg; their error
	// replies must fit the receive buffer.
	batchMax = 64
)

// Open opens a ctnetlink socket in the calling thread's network
// namespace.
func Open() (*Conn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("nfq/ct: conntrack socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("nfq/ct: conntrack socket bind: %w", err)
	}
	// Errors carry only the header of the failed request, not all of it.
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBuf) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvBuf)
	}
	return &Conn{fd: fd, rbuf: make([]byte, 64<<10)}, nil
}

// Close closes the socket.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return nil
	}
	err := unix.Close(c.fd)
	c.fd = -1
	if err != nil {
		return fmt.Errorf("nfq/ct: conntrack close: %w", err)
	}
	return nil
}

// Get reads the entry a tuple belongs to; found is false when there is none.
func (c *Conn) Get(t Tuple) (e Entry, found bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return e, false, errors.New("nfq/ct: conntrack get: socket closed")
	}
	c.seq++
	seq := c.seq
	b, err := appendMsg(c.wbuf[:0], msgGet, seq, unix.NLM_F_REQUEST, t, nil)
	if err != nil {
		return e, false, fmt.Errorf("nfq/ct: conntrack get %v: %w", t, err)
	}
	c.wbuf = b
	var reply []byte
	err = c.exchange(b, seq, seq, func(s uint32, msg []byte) { reply = msg })
	if err == nil {
		err = c.errs[0]
	}
	switch {
	case errors.Is(err, unix.ENOENT):
		return e, false, nil
	case err != nil:
		return e, false, fmt.Errorf("nfq/ct: conntrack get %v: %w", t, err)
	case reply == nil:
		return e, false, fmt.Errorf("nfq/ct: conntrack get %v: no reply", t)
	}
	e, err = parseEntry(reply, t)
	if err != nil {
		return e, false, fmt.Errorf("nfq/ct: conntrack get %v: %w", t, err)
	}
	return e, true, nil
}

// Update changes the entry a tuple belongs to. It returns ErrNotFound when
// there is no such (confirmed) entry.
func (c *Conn) Update(t Tuple, u Update) error {
	errs, err := c.updateBatch([]item{{t, u}})
	if err == nil {
		err = errs[0]
	}
	return err
}

// item is one update of a batch.
type item struct {
	t Tuple
	u Update
}

// updateBatch sends the updates in one write and returns each one's result
// (wrapping ErrNotFound or ErrNoLabelSpace where they apply). The returned
// slice is valid until the next call. The error is for the batch as a whole.
func (c *Conn) updateBatch(items []item) ([]error, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return nil, errors.New("nfq/ct: conntrack update: socket closed")
	}
	b := c.wbuf[:0]
	first := c.seq + 1
	for i, it := range items {
		c.seq++
		flags := uint16(unix.NLM_F_REQUEST)
		if i == len(items)-1 {
			flags |= unix.NLM_F_ACK // success is silent but for the last one
		}
		var err error
		b, err = appendMsg(b, msgNew, c.seq, flags, it.t, &it.u)
		if err != nil {
			return nil, fmt.Errorf("nfq/ct: conntrack update %v: %w", it.t, err)
		}
	}
	c.wbuf = b
	if err := c.exchange(b, first, c.seq, nil); err != nil {
		return nil, fmt.Errorf("nfq/ct: conntrack update: %w", err)
	}
	for i, err := range c.errs {
		switch {
		case err == nil:
		case errors.Is(err, unix.ENOENT):
			c.errs[i] = fmt.Errorf("nfq/ct: conntrack update %v: %w", items[i].t, ErrNotFound)
		case errors.Is(err, unix.ENOSPC) && items[i].u.SetLabels:
			c.errs[i] = fmt.Errorf("nfq/ct: conntrack update %v: %w", items[i].t, ErrNoLabelSpace)
		default:
			c.errs[i] = fmt.Errorf("nfq/ct: conntrack update %v: %w", items[i].t, err)
		}
	}
	return c.errs, nil
}

// exchange sends the messages with sequence numbers first..last (the last
// one asks for an acknowledgement, or is a GET that gets a reply) and
// collects each one's error in c.errs, calling onData for data replies.
// ctnetlink handles a write synchronously, so every reply is queued when
// sendmsg returns and reads never wait.
func (c *Conn) exchange(b []byte, first, last uint32, onData func(seq uint32, msg []byte)) error {
	n := int(last - first + 1)
	c.errs = c.errs[:0]
	for range n {
		c.errs = append(c.errs, nil)
	}
	// An unconnected netlink socket writes to the kernel.
	if _, err := unix.Write(c.fd, b); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	for {
		m, err := unix.Read(c.fd, c.rbuf) // non-blocking socket
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			return errors.New("kernel reply missing")
		}
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		done := false
		for rest := c.rbuf[:m]; len(rest) >= unix.SizeofNlMsghdr; {
			l := int(binary.NativeEndian.Uint32(rest[0:4]))
			if l < unix.SizeofNlMsghdr || l > len(rest) {
				return errors.New("malformed netlink message")
			}
			msg := rest[:l]
			rest = rest[min(align(l), len(rest)):]
			typ := binary.NativeEndian.Uint16(msg[4:6])
			seq := binary.NativeEndian.Uint32(msg[8:12])
			if seq-first >= uint32(n) {
				continue // a stale reply to an earlier request
			}
			switch typ {
			case unix.NLMSG_ERROR:
				if len(msg) < unix.SizeofNlMsghdr+4 {
					return errors.New("short netlink error message")
				}
				if errno := -int32(binary.NativeEndian.Uint32(msg[16:20])); errno != 0 {
					c.errs[seq-first] = unix.Errno(errno)
				}
				done = done || seq == last
			case unix.NLMSG_DONE:
				done = done || seq == last
			default:
				if onData != nil {
					onData(seq, msg)
				}
				// A GET without NLM_F_ACK ends with its data reply.
				done = done || (seq == last && typ == msgNew)
			}
		}
		if done {
			return nil
		}
	}
}

func align(n int) int { return (n + 3) &^ 3 }

// appendMsg appends one ctnetlink request for tuple t with update u (nil
// for a GET).
func appendMsg(b []byte, typ uint16, seq uint32, flags uint16, t Tuple, u *Update) ([]byte, error) {
	if !t.Src.IsValid() || !t.Dst.IsValid() {
		return b, errors.New("tuple without addresses")
	}
	src, dst := t.Src.Unmap(), t.Dst.Unmap()
	if src.Is4() != dst.Is4() {
		return b, errors.New("tuple mixes IPv4 and IPv6")
	}
	start := len(b)
	b = binary.NativeEndian.AppendUint32(b, 0) // length, set below
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, flags)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0) // port id: the kernel's
	fam := byte(unix.AF_INET)
	if !src.Is4() {
		fam = unix.AF_INET6
	}
	b = append(b, fam, 0, 0, 0) // nfgenmsg: family, version, res_id

	tuple := nestStart(&b, ctaTupleOrig)
	ip := nestStart(&b, ctaTupleIP)
	if src.Is4() {
		b = attr(b, ctaIPv4Src, src.AsSlice())
		b = attr(b, ctaIPv4Dst, dst.AsSlice())
	} else {
		b = attr(b, ctaIPv6Src, src.AsSlice())
		b = attr(b, ctaIPv6Dst, dst.AsSlice())
	}
	nestEnd(b, ip)
	proto := nestStart(&b, ctaTupleProto)
	b = attr(b, ctaProtoNum, []byte{t.Proto})
	switch t.Proto {
	case unix.IPPROTO_ICMP:
		b = attrBE16(b, ctaICMPID, t.SPort)
		b = attr(b, ctaICMPType, []byte{byte(t.DPort >> 8)})
		b = attr(b, ctaICMPCode, []byte{byte(t.DPort)})
	case unix.IPPROTO_ICMPV6:
		b = attrBE16(b, ctaICMPv6ID, t.SPort)
		b = attr(b, ctaICMPv6Type, []byte{byte(t.DPort >> 8)})
		b = attr(b, ctaICMPv6Code, []byte{byte(t.DPort)})
	default:
		b = attrBE16(b, ctaProtoSPort, t.SPort)
		b = attrBE16(b, ctaProtoDPort, t.DPort)
	}
	nestEnd(b, proto)
	nestEnd(b, tuple)

	if u != nil {
		if u.SetTimeout {
			b = attrBE32(b, ctaTimeout, u.Timeout)
		}
		if u.SetMark {
			mask := u.MarkMask
			if mask == 0 {
				mask = ^uint32(0)
			}
			// The kernel computes (mark & ^mask) ^ CTA_MARK.
			b = attrBE32(b, ctaMark, u.Mark&mask)
			b = attrBE32(b, ctaMarkMask, mask)
		}
		if u.SetLabels {
			mask := u.LabelsMask
			if mask == [2]uint64{} {
				mask = u.Labels
			}
			var lb, mb [16]byte
			binary.NativeEndian.PutUint64(lb[0:], u.Labels[0]&mask[0])
			binary.NativeEndian.PutUint64(lb[8:], u.Labels[1]&mask[1])
			binary.NativeEndian.PutUint64(mb[0:], mask[0])
			binary.NativeEndian.PutUint64(mb[8:], mask[1])
			b = attr(b, ctaLabels, lb[:])
			b = attr(b, ctaLabelsMask, mb[:])
		}
	}
	binary.NativeEndian.PutUint32(b[start:], uint32(len(b)-start))
	return b, nil
}

func attr(b []byte, typ uint16, data []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(unix.SizeofNlAttr+len(data)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func attrBE16(b []byte, typ uint16, v uint16) []byte {
	var d [2]byte
	binary.BigEndian.PutUint16(d[:], v)
	return attr(b, typ, d[:])
}

func attrBE32(b []byte, typ uint16, v uint32) []byte {
	var d [4]byte
	binary.BigEndian.PutUint32(d[:], v)
	return attr(b, typ, d[:])
}

// nestStart opens a nested attribute and returns its offset for nestEnd.
func nestStart(b *[]byte, typ uint16) int {
	off := len(*b)
	*b = binary.NativeEndian.AppendUint16(*b, 0)
	*b = binary.NativeEndian.AppendUint16(*b, typ|nlaNested)
	return off
}

func nestEnd(b []byte, off int) {
	binary.NativeEndian.PutUint16(b[off:], uint16(len(b)-off))
}

// attrs calls fn for each attribute in b.
func attrs(b []byte, fn func(typ uint16, data []byte)) error {
	for len(b) >= unix.SizeofNlAttr {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		if l < unix.SizeofNlAttr || l > len(b) {
			return errors.New("malformed attribute")
		}
		fn(binary.NativeEndian.Uint16(b[2:4])&^(unix.NLA_F_NESTED|unix.NLA_F_NET_BYTEORDER), b[unix.SizeofNlAttr:l])
		b = b[min(align(l), len(b)):]
	}
	return nil
}

// parseEntry decodes an IPCTNL_MSG_CT_NEW reply; asked is the tuple the
// lookup used (to tell the direction).
func parseEntry(msg []byte, asked Tuple) (Entry, error) {
	var e Entry
	if len(msg) < unix.SizeofNlMsghdr+4 {
		return e, errors.New("short conntrack message")
	}
	var origSrc netip.Addr
	var origSPort uint16
	var perr error
	err := attrs(msg[unix.SizeofNlMsghdr+4:], func(typ uint16, d []byte) {
		switch typ {
		case ctaTupleOrig:
			perr = errors.Join(perr, attrs(d, func(typ uint16, d []byte) {
				switch typ {
				case ctaTupleIP:
					perr = errors.Join(perr, attrs(d, func(typ uint16, d []byte) {
						if typ == ctaIPv4Src || typ == ctaIPv6Src {
							origSrc, _ = netip.AddrFromSlice(d)
						}
					}))
				case ctaTupleProto:
					perr = errors.Join(perr, attrs(d, func(typ uint16, d []byte) {
						if (typ == ctaProtoSPort || typ == ctaICMPID || typ == ctaICMPv6ID) && len(d) >= 2 {
							origSPort = binary.BigEndian.Uint16(d)
						}
					}))
				}
			}))
		case ctaStatus:
			if len(d) >= 4 {
				e.Status = binary.BigEndian.Uint32(d)
			}
		case ctaTimeout:
			if len(d) >= 4 {
				e.Timeout = binary.BigEndian.Uint32(d)
			}
		case ctaMark:
			if len(d) >= 4 {
				e.Mark = binary.BigEndian.Uint32(d)
			}
		case ctaLabels:
			var l [16]byte
			copy(l[:], d)
			e.Labels[0] = binary.NativeEndian.Uint64(l[0:])
			e.Labels[1] = binary.NativeEndian.Uint64(l[8:])
		case ctaProtoInfo:
			perr = errors.Join(perr, attrs(d, func(typ uint16, d []byte) {
				if typ != ctaProtoInfoTCP {
					return
				}
				perr = errors.Join(perr, attrs(d, func(typ uint16, d []byte) {
					if typ == ctaTCPState && len(d) >= 1 {
						e.TCPState = d[0]
					}
				}))
			}))
		}
	})
	if err = errors.Join(err, perr); err != nil {
		return e, err
	}
	e.Reply = origSrc != asked.Src.Unmap() || origSPort != asked.SPort
	return e, nil
}

package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"golang.org/x/sys/unix"

	"github.com/luafw/luafw/netfilter"
)

// Verdicts for Verdict.Verdict (the kernel's NF_* values).
const (
	VerdictDrop   = nfqueue.NfDrop   // NF_DROP: the packet is dropped
	VerdictAccept = nfqueue.NfAccept // NF_ACCEPT: the packet continues with the next netfilter hook entry
	VerdictRepeat = nfqueue.NfRepeat // NF_REPEAT: the packet re-enters the current hook entry
	// VerdictQueue (NF_QUEUE) re-queues the packet; put the target queue
	// number in the upper 16 bits: VerdictQueue | uint32(n)<<16.
	VerdictQueue = nfqueue.NfQeueue
	// VerdictStop (NF_STOP) accepts the packet and skips the rest of the
	// current hook (deprecated in the kernel but still honoured from queues).
	VerdictStop = 5
)

// Default values of Config fields left zero.
const (
	DefaultMaxLen      = 4096
	DefaultCopyRange   = 0xffff
	DefaultRcvBuf      = 16 << 20
	DefaultBurst       = 64
	maxCopyRange       = 0xffff - nlaHdrLen // NFQNL_MAX_COPY_RANGE
	slotOverhead       = 4096               // room for headers and attributes besides the payload
	configTimeout      = 5 * time.Second
	sendChunk          = 256 << 10 // verdict bytes per sendmsg before splitting
	sndBuf             = 1 << 20
	maxPendingAtConfig = 1 << 16 // packets received while configuring, kept for Serve
)

// Config configures one NFQUEUE socket.
type Config struct {
	// Queues are the queue numbers bound on this one socket (for example a
	// segment's per-ct-state queues); Msg.Queue tells which one a packet came from.
	Queues    []uint16
	MaxLen    uint32 // kernel queue length; default DefaultMaxLen
	CopyRange uint32 // bytes of each packet copied to userspace; default 0xffff
	// FailOpen sets NFQA_CFG_F_FAIL_OPEN (the kernel accepts packets when the
	// queue is full) and makes the socket accept, rather than drop, packets
	// it cannot hand to the handler (unparseable, or the handler panicked).
	FailOpen bool
	GSO      bool // NFQA_CFG_F_GSO: receive GSO super-packets unsegmented
	UIDGID   bool // NFQA_CFG_F_UID_GID: socket uid/gid of local packets
	// ConnTrack requests NFQA_CFG_F_CONNTRACK (NFQA_CT on every packet). Kernels
	// without it refuse the flag; the socket then works without it and
	// Info().ConnTrackRefused says so.
	ConnTrack bool
	RcvBuf    int // receive buffer bytes; default DefaultRcvBuf (SO_RCVBUFFORCE)
	Burst     int // maximum datagrams per receive call; default DefaultBurst
	Logger    *slog.Logger
}

// Msg is one queued packet.
type Msg struct {
	Queue   uint16         // queue number it came from
	ID      uint32         // packet id, unique per queue
	HWProto uint16         // ethertype (0x0800 IPv4, 0x86dd IPv6)
	Hook    netfilter.Hook // the hook that queued it (its value is the NF_INET_* number)
	// Payload is the packet from its network header on. It points into the
	// socket's receive buffer and is valid only during the handler call.
	Payload []byte
	CapLen  uint32 // length of the whole packet (more than len(Payload) when cut by CopyRange)
	SkbInfo uint32 // SkbCsumNotReady, SkbGSO, SkbCsumNotVerified bits
	Mark    uint32
	InDev   uint32 // input interface index, 0 if none
	OutDev  uint32 // output interface index, 0 if none
	UID     uint32 // socket owner of a local packet (Config.UIDGID)
	GID     uint32
	HasUID  bool
	CTInfo  uint32 // enum ip_conntrack_info, with HasCT
	HasCT   bool
	CT      []byte // raw NFQA_CT nest if any; valid only during the handler call
}

// Verdict is the answer for one Msg.
type Verdict struct {
	Verdict uint32 // VerdictDrop, VerdictAccept, VerdictRepeat, VerdictStop or VerdictQueue|n<<16
	Mark    uint32 // new packet mark, with SetMark
	SetMark bool
	Payload []byte // optional altered packet, if not empty (checksums are the caller's business)
}

// Stats are counters of one socket, safe to read at any time.
type Stats struct {
	Received     uint64 // packets handed to the handler
	Bursts       uint64 // handler calls
	MaxBurst     uint64 // most packets in one handler call
	VerdictsSent uint64 // verdicts the kernel took
	SendErrors   uint64 // verdicts that could not be sent after retries (packet left queued)
	KernelErrors uint64 // error replies from the kernel (e.g. a verdict for an unknown id)
	ENOBUFS      uint64 // receive overruns reported by the kernel
	RecvErrors   uint64 // failed receive calls other than ENOBUFS
	ParseErrors  uint64 // malformed or truncated messages
	Truncated    uint64 // datagrams larger than a receive slot (answered without the handler)
	BadVerdicts  uint64 // invalid verdicts from the handler (replaced by VerdictDrop)
	Panics       uint64 // handler calls that panicked (the burst got the fail verdict)
}

// Info describes what the kernel granted when the socket was opened.
type Info struct {
	Queues           []uint16
	PortID           uint32 // netlink port id of the socket
	Flags            uint32 // NFQA_CFG_F_* flags in effect
	ConnTrack        bool   // NFQA_CT is delivered
	ConnTrackRefused bool   // ConnTrack was requested but the kernel refused it
	RcvBuf           int    // receive buffer as reported by the kernel
	Burst            int
	SlotSize         int // bytes per receive slot
}

// Socket is one NETLINK_NETFILTER socket bound to one or more queues.
// Serve runs on one goroutine at a time; Stats and Info are safe anywhere.
type Socket struct {
	cfg  Config
	log  *slog.Logger
	file *os.File
	rc   syscall.RawConn
	info Info

	seq     uint32
	pending [][]byte // datagrams with packets received while configuring

	serveMu sync.Mutex // held by Serve; Close waits for it
	closing atomic.Bool
	closeMu sync.Mutex
	closed  bool

	st queueCounters

	// Hot path state, owned by Serve.
	sent    func() // ServeThen's after-verdicts call, nil when none
	slot    int
	bufs    []byte
	iovs    []unix.Iovec
	hdrs    []mmsghdr
	dgrams  [][]byte
	msgs    []Msg
	forced  []forcedVerdict
	out     []Verdict
	vbuf    []byte
	vcount  int
	recvN   int
	recvErr error
	recvFn  func(fd uintptr) bool
	sendBuf []byte
	sendErr error
	sendFn  func(fd uintptr) bool
	errLog  logLimiter
}

type queueCounters struct {
	received, bursts, maxBurst, sent, sendErrors, kernelErrors       atomic.Uint64
	enobufs, recvErrors, parseErrors, truncated, badVerdicts, panics atomic.Uint64
}

// mmsghdr is struct mmsghdr (x/sys/unix has no recvmmsg wrapper).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// Open opens a NETLINK_NETFILTER socket in the current network
// namespace and binds cfg.Queues to it, each with copy mode "packet", the
// copy range, queue length and flags of cfg. Nothing is left bound on error.
func Open(cfg Config) (*Socket, error) {
	s, err := newSocket(cfg)
	if err != nil {
		return nil, err
	}
	if err := s.openFD(); err != nil {
		return nil, err
	}
	if err := s.bindAll(); err != nil {
		s.file.Close()
		return nil, err
	}
	s.allocHotPath()
	return s, nil
}

// newSocket checks cfg and fills in defaults; it opens nothing.
func newSocket(cfg Config) (*Socket, error) {
	if len(cfg.Queues) == 0 {
		return nil, errors.New("nfq/queue: open queue: no queue numbers given")
	}
	q := slices.Clone(cfg.Queues)
	slices.Sort(q)
	if len(slices.Compact(q)) != len(cfg.Queues) {
		return nil, fmt.Errorf("nfq/queue: open queue: duplicate queue numbers in %v", cfg.Queues)
	}
	cfg.Queues = slices.Clone(cfg.Queues)
	if cfg.MaxLen == 0 {
		cfg.MaxLen = DefaultMaxLen
	}
	if cfg.CopyRange == 0 {
		cfg.CopyRange = DefaultCopyRange
	}
	if cfg.RcvBuf <= 0 {
		cfg.RcvBuf = DefaultRcvBuf
	}
	if cfg.Burst <= 0 {
		cfg.Burst = DefaultBurst
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Socket{cfg: cfg, log: cfg.Logger.With("queues", cfg.Queues)}, nil
}

func (s *Socket) openFD() error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return fmt.Errorf("nfq/queue: open netlink socket: %w", err)
	}
	fail := func(what string, err error) error {
		unix.Close(fd)
		return fmt.Errorf("nfq/queue: %s: %w", what, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fail("bind netlink socket", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	if nl, ok := sa.(*unix.SockaddrNetlink); ok {
		s.info.PortID = nl.Pid
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, s.cfg.RcvBuf); err != nil {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, s.cfg.RcvBuf); err != nil {
			return fail("set receive buffer", err)
		}
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sndBuf); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, sndBuf)
	}
	s.info.RcvBuf, _ = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_NO_ENOBUFS, 1); err != nil {
		return fail("set NETLINK_NO_ENOBUFS", err)
	}
	// Error replies carry only the header of the failed request, not the
	// whole verdict with its payload.
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	return s.attachFD(fd)
}

// attachFD hands the non-blocking socket fd to the runtime poller.
func (s *Socket) attachFD(fd int) error {
	s.file = os.NewFile(uintptr(fd), "nfqueue")
	rc, err := s.file.SyscallConn()
	if err != nil {
		s.file.Close()
		return fmt.Errorf("nfq/queue: raw netlink conn: %w", err)
	}
	s.rc = rc
	return nil
}

// bindAll binds every queue with one config message each: the kernel applies
// the bind, copy mode, queue length and flags of one message together, so no
// packet arrives before its queue is configured.
func (s *Socket) bindAll() error {
	flags := uint32(0)
	if s.cfg.FailOpen {
		flags |= nfqueue.NfQaCfgFlagFailOpen
	}
	if s.cfg.GSO {
		flags |= nfqueue.NfQaCfgFlagGSO
	}
	if s.cfg.UIDGID {
		flags |= nfqueue.NfQaCfgFlagUIDGid
	}
	if s.cfg.ConnTrack {
		flags |= nfqueue.NfQaCfgFlagConntrack
	}
	const mask = nfqueue.NfQaCfgFlagFailOpen | nfqueue.NfQaCfgFlagGSO | nfqueue.NfQaCfgFlagUIDGid | nfqueue.NfQaCfgFlagConntrack
	copyRange := min(s.cfg.CopyRange, maxCopyRange)
	var bound []uint16
	for _, q := range s.cfg.Queues {
		msg := func() []byte {
			return configMsg(q, s.nextSeq(),
				cmdAttr(cmdBind),
				paramsAttr(copyRange, nfqueue.NfQnlCopyPacket),
				configAttr{typ: cfgQueueLen, data: be32Bytes(s.cfg.MaxLen)},
				configAttr{typ: cfgFlags, data: be32Bytes(flags)},
				configAttr{typ: cfgMask, data: be32Bytes(mask)},
			)
		}
		err := s.request(msg())
		if errors.Is(err, unix.EOPNOTSUPP) && flags&nfqueue.NfQaCfgFlagConntrack != 0 {
			// The kernel checks flags before binding, so nothing is bound yet.
			// Debug: the caller decides how to tell people (Info().ConnTrackRefused).
			s.log.Debug("nfqueue: kernel refused NFQA_CFG_F_CONNTRACK; continuing without NFQA_CT")
			s.info.ConnTrackRefused = true
			flags &^= nfqueue.NfQaCfgFlagConntrack
			err = s.request(msg())
		}
		if err != nil {
			s.unbind(bound)
			if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EBUSY) {
				return fmt.Errorf("nfq/queue: bind queue %d: already bound by another socket: %w", q, err)
			}
			return fmt.Errorf("nfq/queue: bind queue %d: %w", q, err)
		}
		bound = append(bound, q)
	}
	s.info.Queues = slices.Clone(s.cfg.Queues)
	s.info.Flags = flags
	s.info.ConnTrack = flags&nfqueue.NfQaCfgFlagConntrack != 0
	return nil
}

func (s *Socket) unbind(queues []uint16) {
	for _, q := range queues {
		if err := s.request(configMsg(q, s.nextSeq(), cmdAttr(cmdUnbind))); err != nil {
			s.log.Warn("nfqueue: unbind failed", "queue", q, "err", err)
		}
	}
}

func (s *Socket) nextSeq() uint32 {
	s.seq++
	return s.seq
}

// request sends one config message and waits for its ack. Packets that
// arrive meanwhile (other queues of this socket are live) are kept for Serve.
func (s *Socket) request(msg []byte) error {
	seq := msgSeq(msg)
	if err := s.writeAll(msg); err != nil {
		return err
	}
	if err := s.file.SetReadDeadline(time.Now().Add(configTimeout)); err != nil {
		return fmt.Errorf("set read deadline: %w", err)
	}
	defer s.file.SetReadDeadline(time.Time{})
	buf := make([]byte, 1<<16+slotOverhead)
	for {
		var n int
		var rerr error
		err := s.rc.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			return rerr != unix.EAGAIN && rerr != unix.EINTR
		})
		if err == nil {
			err = rerr
		}
		if errors.Is(err, unix.ENOBUFS) {
			s.st.enobufs.Add(1)
			continue
		}
		if err != nil {
			return fmt.Errorf("wait for ack: %w", err)
		}
		d := buf[:n]
		hasPacket := false
		for len(d) > 0 {
			typ, m, rest, err := nextMsg(d)
			if err != nil {
				s.st.parseErrors.Add(1)
				break
			}
			d = rest
			switch typ {
			case unix.NLMSG_ERROR:
				errno, eseq, ok := errnoOf(m)
				if !ok || eseq != seq {
					if ok && errno != 0 {
						s.st.kernelErrors.Add(1)
					}
					continue
				}
				if errno != 0 {
					return errno
				}
				if hasPacket {
					s.keepPending(buf[:n])
				}
				return nil
			case msgPacket:
				hasPacket = true
			}
		}
		if hasPacket {
			s.keepPending(buf[:n])
		}
	}
}

func (s *Socket) keepPending(d []byte) {
	if len(s.pending) >= maxPendingAtConfig {
		s.st.parseErrors.Add(1)
		return
	}
	s.pending = append(s.pending, slices.Clone(d))
}

func msgSeq(msg []byte) uint32 { return binary.NativeEndian.Uint32(msg[8:12]) }

// writeAll sends b in one sendmsg, retrying interruptions.
func (s *Socket) writeAll(b []byte) error {
	var werr error
	err := s.rc.Write(func(fd uintptr) bool {
		for {
			_, werr = unix.Write(int(fd), b)
			if werr != unix.EINTR {
				return werr != unix.EAGAIN
			}
		}
	})
	if err != nil {
		return err
	}
	return werr
}

// Info tells what the kernel granted when the socket was opened.
func (s *Socket) Info() Info {
	i := s.info
	i.Queues = slices.Clone(i.Queues)
	return i
}

// Stats returns the socket's counters.
func (s *Socket) Stats() Stats {
	return Stats{
		Received:     s.st.received.Load(),
		Bursts:       s.st.bursts.Load(),
		MaxBurst:     s.st.maxBurst.Load(),
		VerdictsSent: s.st.sent.Load(),
		SendErrors:   s.st.sendErrors.Load(),
		KernelErrors: s.st.kernelErrors.Load(),
		ENOBUFS:      s.st.enobufs.Load(),
		RecvErrors:   s.st.recvErrors.Load(),
		ParseErrors:  s.st.parseErrors.Load(),
		Truncated:    s.st.truncated.Load(),
		BadVerdicts:  s.st.badVerdicts.Load(),
		Panics:       s.st.panics.Load(),
	}
}

// Close stops a running Serve (which then returns nil, after the handler
// call in progress, if any, has finished), unbinds the queues and closes
// the socket. The kernel drops packets still waiting for a
// verdict; with --queue-bypass later packets pass the rule unqueued.
func (s *Socket) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.closing.Store(true)
	_ = s.file.SetReadDeadline(time.Unix(1, 0))
	s.serveMu.Lock() // wait for Serve to return
	defer s.serveMu.Unlock()
	_ = s.file.SetReadDeadline(time.Time{})
	s.unbind(s.cfg.Queues)
	s.pending = nil // packets read while unbinding: the kernel drops them
	if err := s.file.Close(); err != nil {
		return fmt.Errorf("nfq/queue: close queue socket: %w", err)
	}
	return nil
}

// logLimiter lets one log line through per second and counts the rest.
type logLimiter struct {
	last       time.Time
	suppressed int
}

func (l *logLimiter) allow() (ok bool, suppressed int) {
	now := time.Now()
	if now.Sub(l.last) < time.Second {
		l.suppressed++
		return false, 0
	}
	l.last = now
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}

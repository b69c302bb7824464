package inject

import (
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Injector sends complete IPv4 and IPv6 packets, headers included, through
// raw sockets (IPPROTO_RAW, which implies IP_HDRINCL) of the network
// namespace it was opened in. The packets enter the kernel's output path
// (output and postrouting hooks, routing by their destination) with the
// packet mark given to Send (SO_MARK). It is meant for one goroutine.
type Injector struct {
	fd4, fd6     int
	mark4, mark6 uint32
}

// Open opens the raw sockets. IPv6 is optional: when its socket
// cannot be opened (IPv6 disabled), IPv6 packets are refused by Send.
func Open() (*Injector, error) {
	in := &Injector{fd4: -1, fd6: -1}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return nil, fmt.Errorf("nfq/inject: raw IPv4 socket: %w", err)
	}
	in.fd4 = fd
	if fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW); err == nil {
		in.fd6 = fd
	}
	return in, nil
}

// Send sends the packet b (from its IP header) with the packet mark.
func (in *Injector) Send(b []byte, mark uint32) error {
	if len(b) < 20 {
		return errors.New("nfq/inject: short packet")
	}
	switch b[0] >> 4 {
	case 4:
		if err := setMark(in.fd4, &in.mark4, mark); err != nil {
			return err
		}
		sa := &unix.SockaddrInet4{Addr: [4]byte(b[16:20])}
		if err := unix.Sendto(in.fd4, b, 0, sa); err != nil {
			return fmt.Errorf("nfq/inject: send to %s: %w", netip.AddrFrom4(sa.Addr), err)
		}
	case 6:
		if in.fd6 < 0 {
			return errors.New("nfq/inject: no IPv6 raw socket (IPv6 disabled?)")
		}
		if len(b) < 40 {
			return errors.New("nfq/inject: short IPv6 packet")
		}
		if err := setMark(in.fd6, &in.mark6, mark); err != nil {
			return err
		}
		sa := &unix.SockaddrInet6{Addr: [16]byte(b[24:40])}
		if err := unix.Sendto(in.fd6, b, 0, sa); err != nil {
			return fmt.Errorf("nfq/inject: send to %s: %w", netip.AddrFrom16(sa.Addr), err)
		}
	default:
		return errors.New("nfq/inject: not an IPv4 or IPv6 packet")
	}
	return nil
}

// setMark sets SO_MARK on fd when it differs from what it was last set to
// (the first call always sets it: *cur starts at 0, which is also the
// socket's own mark).
func setMark(fd int, cur *uint32, mark uint32) error {
	if *cur == mark {
		return nil
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(mark)); err != nil {
		return fmt.Errorf("nfq/inject: SO_MARK %#x: %w", mark, err)
	}
	*cur = mark
	return nil
}

// Close closes the sockets.
func (in *Injector) Close() error {
	var err error
	for _, fd := range []int{in.fd4, in.fd6} {
		if fd >= 0 {
			err = errors.Join(err, unix.Close(fd))
		}
	}
	in.fd4, in.fd6 = -1, -1
	return err
}

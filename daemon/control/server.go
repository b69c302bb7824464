package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// requestTimeout bounds how long a client may take to send its request.
const requestTimeout = 5 * time.Second

// StreamWriteTimeout is how long a streamed item may wait for a client
// that does not read before the connection is given up.
const StreamWriteTimeout = 30 * time.Second

// Server answers control requests on a Unix socket.
type Server struct {
	path     string
	ln       *net.UnixListener
	log      *slog.Logger
	mu       sync.Mutex // guards handlers
	handlers map[string]Handler
	wg       sync.WaitGroup
	closeMu  sync.Once
}

// Listen creates the socket at path. A socket left there by a daemon that
// is gone is replaced; one on which a daemon still answers is an error, as
// is any file there that is not a socket. The directory is created 0700 if
// missing; the socket is 0600.
func Listen(path string, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("control: %w", err)
		}
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	// The peer check below holds even in the moment before the chmod.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control: %w", err)
	}
	return &Server{path: path, ln: ln, log: log, handlers: map[string]Handler{}}, nil
}

// removeStale removes a socket at path that no process listens on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("control: %s exists and is not a socket; not touching it", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("control: a luafw daemon already answers on %s", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("control: probing %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("control: removing stale socket: %w", err)
	}
	return nil
}

// Path returns the socket's path.
func (s *Server) Path() string { return s.path }

// Handle registers the handler of a command (replacing any earlier one).
func (s *Server) Handle(cmd string, h Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handlers[cmd] = h
}

func (s *Server) handler(cmd string) Handler {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.handlers[cmd]
}

// Serve accepts connections until ctx is done or Close is called, then
// waits for the running requests, and removes the socket.
func (s *Server) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	defer s.wg.Wait()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("control: %w", err)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			s.serveConn(ctx, c)
		}()
	}
}

// Close stops accepting and removes the socket file.
func (s *Server) Close() error {
	var err error
	s.closeMu.Do(func() { err = s.ln.Close() })
	return err
}

func (s *Server) serveConn(ctx context.Context, c *net.UnixConn) {
	if uid, err := peerUID(c); err != nil || (uid != 0 && uid != uint32(os.Geteuid())) {
		s.log.Warn("control: refused a connection", "uid", uid, "err", err)
		return
	}
	c.SetReadDeadline(time.Now().Add(requestTimeout))
	line, err := bufio.NewReader(&limitReader{c, MaxRequest}).ReadBytes('\n')
	if err != nil {
		s.log.Debug("control: reading request", "err", err)
		return
	}
	c.SetReadDeadline(time.Time{})
	enc := json.NewEncoder(c)
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		enc.Encode(Response{Error: fmt.Sprintf("bad request: %v", err)})
		return
	}
	h := s.handler(req.Cmd)
	if h == nil {
		enc.Encode(Response{Error: fmt.Sprintf("unknown command %q", req.Cmd)})
		return
	}
	// The request's context ends when the client hangs up: a streaming
	// handler stops sending to nobody.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		var b [1]byte
		c.Read(b[:]) // returns when the client closes (it sends nothing more)
		cancel()
	}()
	// A write blocked on a client that stopped reading ends when the
	// request does (shutdown, hang-up) or after StreamWriteTimeout.
	stopWrites := context.AfterFunc(ctx, func() { c.SetWriteDeadline(time.Now()) })
	defer stopWrites()
	send := func(item any) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		b, err := json.Marshal(item)
		if err != nil {
			return err
		}
		c.SetWriteDeadline(time.Now().Add(StreamWriteTimeout))
		return enc.Encode(Response{More: true, Result: b})
	}
	res, err := h(ctx, req.Args, send)
	if err != nil {
		enc.Encode(Response{Error: err.Error()})
		return
	}
	b, err := json.Marshal(res)
	if err != nil {
		enc.Encode(Response{Error: fmt.Sprintf("encoding the result: %v", err)})
		return
	}
	enc.Encode(Response{Result: b})
}

// peerUID is the user id of the process at the other end of c.
func peerUID(c *net.UnixConn) (uint32, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := rc.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if credErr != nil {
		return 0, credErr
	}
	return cred.Uid, nil
}

// limitReader fails a read past n bytes (io.LimitReader would end in EOF,
// which would look like a complete request).
type limitReader struct {
	r interface{ Read([]byte) (int, error) }
	n int
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, fmt.Errorf("request longer than %d bytes", MaxRequest)
	}
	if len(p) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= n
	return n, err
}

package control

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func serve(t *testing.T, path string) (*Server, context.CancelFunc, chan error) {
	t.Helper()
	s, err := Listen(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Handle("echo", func(ctx context.Context, args json.RawMessage, send func(any) error) (any, error) {
		var a struct{ Text string }
		if err := DecodeArgs(args, &a); err != nil {
			return nil, err
		}
		return map[string]string{"text": a.Text}, nil
	})
	s.Handle("fail", func(context.Context, json.RawMessage, func(any) error) (any, error) {
		return nil, errors.New("p.lua:3: broken")
	})
	s.Handle("count", func(ctx context.Context, args json.RawMessage, send func(any) error) (any, error) {
		for i := range 3 {
			if err := send(i); err != nil {
				return nil, err
			}
		}
		return "done", nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return s, cancel, done
}

func TestCallAndStream(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	path := filepath.Join(dir, "c.sock")
	serve(t, path)
	for p, want := range map[string]os.FileMode{dir: 0o700, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
		}
	}
	ctx := context.Background()
	var out map[string]string
	if err := Call(ctx, path, "echo", map[string]string{"text": "hi"}, &out); err != nil || out["text"] != "hi" {
		t.Fatalf("echo: %v %v", out, err)
	}
	var re *RemoteError
	if err := Call(ctx, path, "fail", nil, nil); !errors.As(err, &re) || re.Msg != "p.lua:3: broken" {
		t.Fatalf("fail: %v", err)
	}
	if err := Call(ctx, path, "nosuch", nil, nil); !errors.As(err, &re) || !strings.Contains(re.Msg, "unknown command") {
		t.Fatalf("unknown command: %v", err)
	}
	if err := Call(ctx, path, "echo", map[string]string{"txet": "typo"}, nil); !errors.As(err, &re) || !strings.Contains(re.Msg, "txet") {
		t.Fatalf("unknown argument: %v", err)
	}
	var items []int
	var final string
	err := Stream(ctx, path, "count", nil, func(b json.RawMessage) error {
		var i int
		if err := json.Unmarshal(b, &i); err != nil {
			return err
		}
		items = append(items, i)
		return nil
	}, &final)
	if err != nil || len(items) != 3 || items[2] != 2 || final != "done" {
		t.Fatalf("stream: %v %q %v", items, final, err)
	}
}

func TestOversizedRequest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.sock")
	serve(t, path)
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go c.Write([]byte(strings.Repeat("x", MaxRequest+10)))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var b [64]byte
	if n, err := c.Read(b[:]); err == nil {
		t.Fatalf("the server answered an oversized request: %q", b[:n])
	}
}

func TestSocketLifecycle(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.sock")
	_, cancel, done := serve(t, path)
	if _, err := Listen(path, nil); err == nil || !strings.Contains(err.Error(), "already answers") {
		t.Fatalf("second server on a live socket: %v", err)
	}
	cancel()
	<-done
	done <- nil // for the cleanup
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left after Serve returned: %v", err)
	}
	if err := Call(context.Background(), path, "echo", nil, nil); !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("no daemon: %v", err)
	}

	// A stale socket (its listener gone without removing it) is replaced.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if err := Call(context.Background(), path, "echo", nil, nil); !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("stale socket: %v", err)
	}
	serve(t, path)
	if err := Call(context.Background(), path, "echo", nil, nil); err != nil {
		t.Fatalf("after replacing the stale socket: %v", err)
	}

	// Any other file is left alone.
	other := filepath.Join(dir, "file")
	os.WriteFile(other, []byte("x"), 0o600)
	if _, err := Listen(other, nil); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(other); string(b) != "x" {
		t.Fatal("the regular file was touched")
	}
}

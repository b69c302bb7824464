package control

import (
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStuckStreamReader: a client that stops reading a stream blocks only
// its handler, and shutting the server down ends even that.
func TestStuckStreamReader(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.sock")
	s, err := Listen(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	blocked := make(chan struct{})
	s.Handle("flood", func(ctx context.Context, _ json.RawMessage, send func(any) error) (any, error) {
		item := strings.Repeat("x", 4096)
		for i := 0; ; i++ {
			if i == 1000 { // far more than the socket buffers hold
				close(blocked)
			}
			if err := send(item); err != nil {
				return nil, err
			}
		}
	})
	s.Handle("echo", func(context.Context, json.RawMessage, func(any) error) (any, error) { return "hi", nil })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()

	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte(`{"cmd":"flood"}` + "\n"))
	select {
	case <-blocked:
		t.Fatal("the handler wrote 1000 items of 4 KiB to a client that reads nothing")
	case <-time.After(500 * time.Millisecond):
	}
	var got string
	if err := Call(context.Background(), path, "echo", nil, &got); err != nil || got != "hi" {
		t.Fatalf("another request while one is stuck: %q %v", got, err)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return: a stuck reader holds the server")
	}
}

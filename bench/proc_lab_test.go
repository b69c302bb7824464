package main

import (
	"context"
	"testing"
	"time"

	"github.com/luafw/luafw/nfq/queue"
	"github.com/luafw/luafw/tests/lab"
)

// TestReadQueuesInNamespace: readQueues shows the router namespace's
// queues (a thread's /proc/thread-self/net is its namespace's), not the
// machine's.
func TestReadQueuesInNamespace(t *testing.T) {
	l := lab.New(t, lab.Options{})
	const q = 4242
	var s *queue.Socket
	if err := l.Router.Do(func() (err error) { s, err = queue.Open(queue.Config{Queues: []uint16{q}}); return err }); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	qs, err := readQueues(ctx, l.Router)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := qs[q]; !ok {
		t.Errorf("queue %d bound in the router is missing: %v", q, qs)
	}
	if err := l.Client.Do(func() error {
		qs, err = readKernelQueues("/proc/thread-self")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, ok := qs[q]; ok {
		t.Errorf("the client namespace shows the router's queue %d", q)
	}
}

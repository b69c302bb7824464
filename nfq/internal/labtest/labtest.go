// Package labtest holds the helpers the lab tests of nfq's packages share:
// a bounded test context and a go-nfqueue reader that serves a queue inside
// a lab namespace, independent of the queue package under test.
//
// It is for tests only. Everything it opens lives in namespaces the test's
// lab created, and is closed at the test's cleanup.
package labtest

import (
	"context"
	"testing"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"

	"github.com/luafw/luafw/tests/lab"
)

// Context returns a context cancelled after 60 s or at the test's end.
func Context(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Reader serves queue q inside ns with go-nfqueue until the test ends:
// decide returns the verdict and the mark to set (if setMark) for each
// packet.
func Reader(t *testing.T, ns *lab.NS, q uint16, decide func(a nfqueue.Attribute) (verdict int, mark uint32, setMark bool)) {
	t.Helper()
	var nf *nfqueue.Nfqueue
	err := ns.Do(func() (err error) {
		nf, err = nfqueue.Open(&nfqueue.Config{NfQueue: q, MaxPacketLen: 0xffff, MaxQueueLen: 1024, Copymode: nfqueue.NfQnlCopyPacket})
		return err
	})
	if err != nil {
		t.Fatalf("nfqueue open %d: %v", q, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); nf.Close() })
	err = nf.RegisterWithErrorFunc(ctx, func(a nfqueue.Attribute) int {
		v, mark, set := decide(a)
		var err error
		if set {
			err = nf.SetVerdictWithOption(*a.PacketID, v, nfqueue.WithMark(mark))
		} else {
			err = nf.SetVerdict(*a.PacketID, v)
		}
		if err != nil {
			t.Logf("queue %d verdict: %v", q, err)
		}
		return 0
	}, func(err error) int {
		if ctx.Err() != nil {
			return 1
		}
		t.Logf("queue %d: %v", q, err)
		return 0
	})
	if err != nil {
		t.Fatalf("nfqueue register %d: %v", q, err)
	}
}

// PacketMark is a's packet mark, 0 when it has none.
func PacketMark(a nfqueue.Attribute) uint32 {
	if a.Mark == nil {
		return 0
	}
	return *a.Mark
}

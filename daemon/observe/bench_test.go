package observe

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/luafw/luafw/config"
	"github.com/luafw/luafw/internal/engine"
)

// The per-packet cost of events and capture on the queue reader's path.
// Off, the daemon only tests a nil *Observer (BenchmarkOff); on, a packet
// whose verdict is not chosen costs a mask test (NotChosen); a chosen one
// costs the rest.

func benchObserver(b *testing.B, cfg string) *Observer {
	f, err := config.Parse([]byte("plugins: [{file: a.lua}]\n"+cfg), filepath.Join(b.TempDir(), "c.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	o, err := New(f, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	o.Start(ctx)
	b.Cleanup(func() { cancel(); o.Wait() })
	return o
}

func BenchmarkOff(b *testing.B) {
	var o *Observer
	p := engine.Packet{Hook: engine.Forward, Data: make([]byte, 60)}
	d := engine.Decision{Verdict: engine.Drop}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if o != nil {
			o.Record("forward@0", &p, &d)
		}
	}
}

func benchRecord(b *testing.B, cfg string, v engine.Verdict) {
	o := benchObserver(b, cfg)
	p := engine.Packet{Hook: engine.Forward, Data: tcpPacketB(b)}
	d := engine.Decision{Verdict: v, By: "guard", ByName: "block_telnet"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		o.Record("forward@0", &p, &d)
	}
	b.StopTimer()
	st := o.Stats()
	b.ReportMetric(float64(st.Events.Lost+st.Capture.Lost)/float64(b.N), "lost/op")
}

func BenchmarkNotChosen(b *testing.B) {
	benchRecord(b, "events: {file: ev.json}\ncapture: {file: c.pcapng}\n", engine.Accept)
}

func BenchmarkEventRateLimited(b *testing.B) {
	benchRecord(b, "events: {file: ev.json, rate: 1/h, burst: 1}\n", engine.Drop)
}

func BenchmarkEventWritten(b *testing.B) {
	benchRecord(b, "events: {file: ev.json, rate: 0, max_size: 1GiB}\n", engine.Drop)
}

func BenchmarkCapture(b *testing.B) {
	benchRecord(b, "capture: {file: c.pcapng, max_size: 1GiB}\n", engine.Drop)
}

// BenchmarkLimiter is the event limiter alone, refused (the flood case)
// and allowed (a rate so high that nothing is refused), on one goroutine
// and on all cores; the clock is a counter every goroutine advances.
func BenchmarkLimiter(b *testing.B) {
	for _, c := range []struct {
		name string
		rate float64
	}{{"refused", 1.0 / 3600}, {"allowed", 1e18}} {
		var clock atomic.Int64
		clock.Store(1e18)
		l := newLimiter(c.rate, 1)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				l.allow(clock.Add(1))
			}
		})
		b.Run(c.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					l.allow(clock.Add(1))
				}
			})
		})
	}
}

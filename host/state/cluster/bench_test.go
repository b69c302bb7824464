package cluster

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/luafw/luafw/host/packet"
	"github.com/luafw/luafw/host/state"
	"github.com/luafw/luafw/internal/engine"
)

// BenchmarkRealisticState runs a plugin that touches shared state on
// every packet (a counter, a ban-map lookup, a per-source token bucket)
// with its state node-local and cluster-scoped on a loopback redis-server,
// in the same run. cpu-ns/pkt is the process's CPU time (user+system,
// all goroutines: the sync loop included) per packet.
func BenchmarkRealisticState(b *testing.B) {
	const plugin = `
local opts = {scope = fw.options.scope}
local bans = state.map("bans", opts)
local seen = state.counter("seen", opts)
local syn = state.bucket("syn", {rate = 1e9, burst = 1e9, scope = fw.options.scope})
fw.register{hook = "forward", fn = function(pkt)
	if pkt.proto ~= "tcp" then return end
	seen:incr()
	if bans:get(pkt.src) then return fw.DROP end
	if pkt.dport == 23 then
		bans:set(pkt.src, true, 60)
		return fw.DROP
	end
	if not syn:take(pkt.src) then return fw.DROP end
end}`
	pkts := make([]*engine.Packet, 256)
	for i := range pkts {
		data, err := packet.Build(packet.Spec{Src: netip.AddrFrom4([4]byte{10, 1, 2, byte(i)}), Dst: netip.MustParseAddr("10.9.8.7"),
			Proto: packet.ProtoTCP, SrcPort: 40000, DstPort: 443, TCPFlags: packet.TCPSyn, Payload: make([]byte, 64)})
		if err != nil {
			b.Fatal(err)
		}
		pkts[i] = &engine.Packet{Hook: engine.Forward, Data: data, CTState: engine.CTNew}
	}
	for _, scope := range []string{"local", "cluster"} {
		b.Run(scope, func(b *testing.B) {
			opts := engine.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			redisCmds := func() int64 { return 0 }
			if scope == "cluster" {
				r := startRedis(b)
				s := newNode(b, r, "bench", nil)
				opts.Cluster = s
				for !s.Stats().Connected {
					time.Sleep(time.Millisecond)
				}
				redisCmds = func() int64 { return commandsProcessed(b, r.addr) }
			}
			e := engine.New(opts)
			defer e.Close()
			spec := engine.PluginSpec{Name: "realistic", File: "realistic.lua", Source: []byte(plugin),
				Options: map[string]any{"scope": scope}, Budget: time.Second}
			if err := e.Load([]engine.PluginSpec{spec}); err != nil {
				b.Fatal(err)
			}
			w := e.NewWorker()
			defer w.Close()
			b.ReportAllocs()
			cpu0, cmds0 := cpuTime(), redisCmds()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if d := w.Run(pkts[i&255]); d.Verdict != engine.Accept {
					b.Fatalf("verdict %v", d.Verdict)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/pkt")
			b.ReportMetric(float64(redisCmds()-cmds0)/b.Elapsed().Seconds(), "redis-cmds/s")
		})
	}
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// commandsProcessed reads total_commands_processed from the server.
func commandsProcessed(b *testing.B, addr string) int64 {
	c := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
	defer c.Close()
	info, err := c.Info(context.Background(), "stats").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "total_commands_processed:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	b.Fatal("no total_commands_processed in INFO stats")
	return 0
}

// BenchmarkHandles is the packet-path cost of each cluster-scoped
// operation beside its node-local twin (Redis on loopback, connected).
func BenchmarkHandles(b *testing.B) {
	r := startRedis(b)
	s := newNode(b, r, "bench", nil)
	for !s.Stats().Connected {
		time.Sleep(time.Millisecond)
	}
	local := state.NewStore(nil, state.Limits{})
	keys := make([]string, 256)
	for i := range keys {
		keys[i] = netip.AddrFrom4([4]byte{10, 1, 2, byte(i)}).String()
	}
	lb, _ := local.Bucket("b", 1e9, 1e9)
	cb, _ := s.Bucket("b", 1e9, 1e9)
	lm, cm := local.Map("m"), s.Map("m")
	for _, k := range keys {
		_ = lm.Set(k, state.BoolValue(true), 0)
		_ = cm.Set(k, state.BoolValue(true), 0)
	}
	ops := []struct {
		name string
		fn   func(i int)
	}{
		{"bucket-take/local", func(i int) { lb.TakeN(keys[i&255], 1) }},
		{"bucket-take/cluster", func(i int) { cb.TakeN(keys[i&255], 1) }},
		{"map-get/local", func(i int) { lm.Get(keys[i&255]) }},
		{"map-get/cluster", func(i int) { cm.Get(keys[i&255]) }},
		{"map-incr/local", func(i int) { _, _ = lm.Incr("n"+keys[i&255], 1, 0, 0) }},
		{"map-incr/cluster", func(i int) { _, _ = cm.Incr("n"+keys[i&255], 1, 0, 0) }},
		{"counter-add/local", func(int) { local.Counter("c").Add(1) }},
		{"counter-add/cluster", func(int) { s.Counter("c").Add(1) }},
	}
	for _, op := range ops {
		b.Run(op.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				op.fn(i)
			}
		})
	}
}

package main

import (
	"io"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/luafw/luafw/config"
	"github.com/luafw/luafw/host/packet"
	"github.com/luafw/luafw/internal/engine"
)

// benchConfig renders a configuration template as the bench does, with a
// generated blocklist, into a temporary directory, and loads it.
func benchConfig(tb testing.TB, tmpl string, listSize int) *config.File {
	tb.Helper()
	dir := tb.TempDir()
	repo, err := filepath.Abs("..")
	if err != nil {
		tb.Fatal(err)
	}
	list := filepath.Join(dir, "blocklist.txt")
	if err := writeBlocklist(list, listSize); err != nil {
		tb.Fatal(err)
	}
	path, err := renderConfig(filepath.Join(repo, "bench"), tmpl, dir, tmpl+".yaml",
		configParams{Repo: repo, BenchDir: filepath.Join(repo, "bench"), ListFile: list, Balance: 1,
			Conntrack: true, OffloadMask: 0x100, IperfPort: iperfPort})
	if err != nil {
		tb.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		tb.Fatal(err)
	}
	return cfg
}

func loadEngine(tb testing.TB, specs []engine.PluginSpec) *engine.Engine {
	tb.Helper()
	e := engine.New(engine.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	tb.Cleanup(e.Close)
	if err := e.Load(specs); err != nil {
		tb.Fatal(err)
	}
	return e
}

func buildPacket(tb testing.TB, s packet.Spec) []byte {
	tb.Helper()
	b, err := packet.Build(s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

var (
	client = netip.MustParseAddr("10.201.1.2")
	server = netip.MustParseAddr("10.201.2.2")
)

// floodPacket is what the bench's UDP flood looks like at the router.
func floodPacket(tb testing.TB) *engine.Packet {
	return &engine.Packet{Hook: engine.Forward, CTState: engine.CTNew, InDev: "r0", OutDev: "r1",
		Data: buildPacket(tb, packet.Spec{Src: client, Dst: server, Proto: packet.ProtoUDP, SrcPort: 40000, DstPort: sinkPort, Payload: make([]byte, 64)})}
}

// TestConfigsLoad: every configuration template renders and loads, the
// realistic ones put all their callbacks where the bench expects, and the
// flood passes them while a listed source and a flood of SSH attempts do
// not.
func TestConfigsLoad(t *testing.T) {
	for _, tmpl := range []string{"trivial", "matched", "realistic", "layered"} {
		cfg := benchConfig(t, tmpl, 1000)
		specs, err := cfg.PluginSpecs()
		if err != nil {
			t.Fatal(err)
		}
		e := loadEngine(t, specs)
		w := e.NewWorker()
		if d := w.Run(floodPacket(t)); d.Verdict != engine.Accept {
			t.Errorf("%s: flood packet got %v, want accept", tmpl, d.Verdict)
		}
		w.Close()
		if tmpl == "matched" {
			// Every callback declares a match: the kernel diverts only them.
			if ms, all := e.SegmentMatches(engine.Forward, math.MinInt, math.MaxInt); all || len(ms) != 2 {
				t.Errorf("matched: %d matches (all %v), want 2 and a narrowed diversion", len(ms), all)
			}
		}
		if tmpl == "realistic" {
			prios := e.HookPriorities()
			if len(prios) != 1 || len(prios[engine.Forward]) != 1 || prios[engine.Forward][0] != 0 {
				t.Errorf("realistic: callbacks at %v, want all in forward at priority 0 (one segment)", prios)
			}
		}
	}

	// The realistic plugins do their jobs: the blocklist drops a listed
	// source, classify marks the iperf3 connection for offload, ratelimit
	// drops the sixth new SSH connection.
	cfg := benchConfig(t, "realistic", 1000)
	specs, err := cfg.PluginSpecs()
	if err != nil {
		t.Fatal(err)
	}
	w := loadEngine(t, specs).NewWorker()
	defer w.Close()
	listed := firstListed(t, cfg)
	p := floodPacket(t)
	p.Data = buildPacket(t, packet.Spec{Src: listed, Dst: server, Proto: packet.ProtoUDP, SrcPort: 1, DstPort: sinkPort})
	if d := w.Run(p); d.Verdict != engine.Drop {
		t.Errorf("listed source %s: %v, want drop", listed, d.Verdict)
	}
	syn := func(dport uint16) *engine.Packet {
		return &engine.Packet{Hook: engine.Forward, CTState: engine.CTNew,
			Data: buildPacket(t, packet.Spec{Src: client, Dst: server, Proto: packet.ProtoTCP, SrcPort: 40001, DstPort: dport, TCPFlags: packet.TCPSyn})}
	}
	if d := w.Run(syn(iperfPort)); d.Verdict != engine.Accept || !d.CT.SetMark || d.CT.Mark&0x100 == 0 {
		t.Errorf("iperf3 SYN: %v, ct %+v; want accept with offload bit 0x100 in the ct mark", d.Verdict, d.CT)
	}
	var verdicts []engine.Verdict
	for range 6 {
		verdicts = append(verdicts, w.Run(syn(22)).Verdict)
	}
	if verdicts[4] != engine.Accept || verdicts[5] != engine.Drop {
		t.Errorf("6 SSH SYNs: %v, want 5 accepted (burst) then drop", verdicts)
	}
}

// firstListed returns the first address of the first prefix of the
// configuration's blocklist file.
func firstListed(t *testing.T, cfg *config.File) netip.Addr {
	t.Helper()
	for _, p := range cfg.Plugins {
		files, _ := p.Options["files"].([]any)
		if len(files) == 0 {
			continue
		}
		b, err := os.ReadFile(files[0].(string))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if pf, err := netip.ParsePrefix(strings.TrimSpace(line)); err == nil {
				return pf.Addr()
			}
		}
	}
	t.Fatal("no blocklist in the configuration")
	return netip.Addr{}
}

// BenchmarkShippedPlugins measures one flood packet (UDP, forward) through
// each plugin of the realistic configuration alone and through all of them,
// on one core, as the daemon's worker runs them: with ct state established
// (the bench's answered flows) and new (every packet of a one-way flood).
func BenchmarkShippedPlugins(b *testing.B) {
	cfg := benchConfig(b, "realistic", 10_000)
	all, err := cfg.PluginSpecs()
	if err != nil {
		b.Fatal(err)
	}
	trivial, err := benchConfig(b, "trivial", 1).PluginSpecs()
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name  string
		specs []engine.PluginSpec
	}{{"accept", trivial}}
	for _, s := range all {
		cases = append(cases, struct {
			name  string
			specs []engine.PluginSpec
		}{strings.TrimSuffix(filepath.Base(s.File), ".lua"), []engine.PluginSpec{s}})
	}
	cases = append(cases, struct {
		name  string
		specs []engine.PluginSpec
	}{"realistic", all})
	for _, st := range []engine.CTState{engine.CTEstablished, engine.CTNew} {
		for _, c := range cases {
			b.Run(st.String()+"/"+c.name, func(b *testing.B) {
				w := loadEngine(b, c.specs).NewWorker()
				defer w.Close()
				p := floodPacket(b)
				p.CTState = st
				if d := w.Run(p); d.Verdict != engine.Accept || d.Errors != 0 {
					b.Fatalf("verdict %v errors %d, want accept", d.Verdict, d.Errors)
				}
				b.ReportAllocs()
				for b.Loop() {
					w.Run(p)
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
			})
		}
	}
}

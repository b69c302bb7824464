package tests

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/luafw/luafw/host/dnsmsg"
	"github.com/luafw/luafw/host/packet"
	"github.com/luafw/luafw/host/tlshello"
	"github.com/luafw/luafw/internal/engine"
)

// Go-side tests of the shipped plugins: what the Lua tests (luafw test
// plugins/) cannot do — big generated inputs, load times, per-packet cost.

const pluginDir = "../plugins"

func quietEngine(tb testing.TB) *engine.Engine {
	tb.Helper()
	eng := engine.New(engine.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	tb.Cleanup(eng.Close)
	return eng
}

// writeList writes n distinct /32 entries (and a few comments) to a file
// and returns its path; entry i is 10.x.y.z with x.y.z = i + 1.
func writeList(tb testing.TB, n int) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "big.txt")
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "# generated blocklist")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(w, "10.%d.%d.%d # entry %d\n", i>>16&0xff, i>>8&0xff, i&0xff, i)
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	return path
}

func blocklistSpec(file string) engine.PluginSpec {
	return engine.PluginSpec{File: filepath.Join(pluginDir, "blocklist.lua"), Budget: time.Second,
		Options: map[string]any{"files": []any{file}}, AllowDirs: []string{filepath.Dir(file)}}
}

func synFrom(tb testing.TB, src string) []byte {
	tb.Helper()
	b, err := packet.Build(packet.Spec{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr("192.0.2.1"),
		Proto: packet.ProtoTCP, SrcPort: 40000, DstPort: 80, TCPFlags: packet.TCPSyn})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestBlocklist100k loads a 100,000-entry list file into blocklist.lua and
// checks entries at both ends, the middle and just outside.
func TestBlocklist100k(t *testing.T) {
	const n = 100_000
	list := writeList(t, n)
	eng := quietEngine(t)
	start := time.Now()
	if err := eng.Load([]engine.PluginSpec{blocklistSpec(list)}); err != nil {
		t.Fatal(err)
	}
	t.Logf("loaded %d entries in %v", n, time.Since(start))
	for _, c := range []struct {
		src  string
		want engine.Verdict
	}{
		{"10.0.0.1", engine.Drop}, // first
		{fmt.Sprintf("10.%d.%d.%d", n>>16&0xff, n>>8&0xff, n&0xff), engine.Drop}, // last
		{"10.0.195.80", engine.Drop}, // 50000
		{"10.0.0.0", engine.Accept},  // before the first
		{fmt.Sprintf("10.%d.%d.%d", (n+1)>>16&0xff, (n+1)>>8&0xff, (n+1)&0xff), engine.Accept}, // after the last
		{"192.0.2.77", engine.Accept},
	} {
		d := eng.Process(&engine.Packet{Hook: engine.Input, Data: synFrom(t, c.src)})
		if d.Verdict != c.want || d.Errors != 0 {
			t.Errorf("%s: %v (errors %d), want %v", c.src, d.Verdict, d.Errors, c.want)
		}
	}
}

// BenchmarkBlocklistLoad100k measures loading blocklist.lua with a
// 100,000-entry file: reading, parsing, sorting and merging the list, and
// compiling and running the plugin's top level.
func BenchmarkBlocklistLoad100k(b *testing.B) {
	list := writeList(b, 100_000)
	b.ReportAllocs()
	for b.Loop() {
		eng := engine.New(engine.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err := eng.Load([]engine.PluginSpec{blocklistSpec(list)}); err != nil {
			b.Fatal(err)
		}
		eng.Close()
	}
}

// benchPlugin runs one packet through a plugin's hook repeatedly and
// reports the cost per packet.
func benchPlugin(b *testing.B, file string, opts map[string]any, pkt *engine.Packet) {
	eng := quietEngine(b)
	if err := eng.Load([]engine.PluginSpec{{File: filepath.Join(pluginDir, file), Options: opts, Budget: time.Second}}); err != nil {
		b.Fatal(err)
	}
	w := eng.NewWorker()
	defer w.Close()
	b.ReportAllocs()
	for b.Loop() {
		if d := w.Run(pkt); d.Errors != 0 {
			b.Fatal("callback failed")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/packet")
}

func BenchmarkBlocklistPacket100k(b *testing.B) {
	list := writeList(b, 100_000)
	benchPlugin(b, "blocklist.lua", map[string]any{"files": []any{list}},
		&engine.Packet{Hook: engine.Input, Data: synFrom(b, "10.1.2.3")})
}

func BenchmarkDNSFilterPacket(b *testing.B) {
	q, err := dnsmsg.AppendQuery(nil, 1, "www.cdn.ads.example", 1)
	if err != nil {
		b.Fatal(err)
	}
	data, err := packet.Build(packet.Spec{Src: netip.MustParseAddr("192.0.2.10"), Dst: netip.MustParseAddr("198.51.100.53"),
		Proto: packet.ProtoUDP, SrcPort: 5353, DstPort: 53, Payload: q})
	if err != nil {
		b.Fatal(err)
	}
	benchPlugin(b, "dnsfilter.lua", map[string]any{"names": []any{"ads.example", "tracker.example"}, "log": false},
		&engine.Packet{Hook: engine.Forward, Data: data, CTState: engine.CTNew})
}

func BenchmarkSNIPacket(b *testing.B) {
	hello := tlshello.Build(tlshello.Spec{SNI: "www.video.example", ALPN: []string{"h2", "http/1.1"}, TLS13: true, GREASE: true, Padding: 200})
	data, err := packet.Build(packet.Spec{Src: netip.MustParseAddr("192.0.2.10"), Dst: netip.MustParseAddr("198.51.100.80"),
		Proto: packet.ProtoTCP, SrcPort: 50000, DstPort: 443, TCPFlags: packet.TCPPsh | packet.TCPAck, Payload: hello})
	if err != nil {
		b.Fatal(err)
	}
	benchPlugin(b, "sni.lua", map[string]any{"names": []any{"blocked.example"}, "marks": map[string]any{"video.example": 0x10}},
		&engine.Packet{Hook: engine.Forward, Data: data, CTState: engine.CTEstablished})
}

// TestProtoModulesRefuseNonStrings: dns.parse and tls.sni given something
// other than a string return nil and a reason instead of raising an error.
func TestProtoModulesRefuseNonStrings(t *testing.T) {
	eng := quietEngine(t)
	src := `
fw.register{hook = "input", fn = function(pkt)
	for _, f in ipairs({dns.parse, tls.sni, tls.parse}) do
		for _, arg in ipairs({42, true, {}}) do
			local r, why = f(arg)
			if r ~= nil or why ~= "payload must be a string" then error("got " .. tostring(r) .. ", " .. tostring(why)) end
		end
		local r, why = f(nil)
		if r ~= nil or why ~= "payload must be a string" then error("nil: got " .. tostring(why)) end
	end
	return fw.DROP
end}`
	if err := eng.Load([]engine.PluginSpec{{Name: "probe", File: "probe.lua", Source: []byte(src), Budget: time.Second}}); err != nil {
		t.Fatal(err)
	}
	d := eng.Process(&engine.Packet{Hook: engine.Input, Data: synFrom(t, "192.0.2.1")})
	if d.Verdict != engine.Drop || d.Errors != 0 {
		t.Fatalf("verdict %v, errors %d: the modules raised an error", d.Verdict, d.Errors)
	}
}

package daemon

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/luafw/luafw/host/packet"
	"github.com/luafw/luafw/internal/engine"
)

// TestMetricsScrape runs packets through a daemon's engine (two plugins,
// three callbacks), scrapes /metrics over HTTP, parses it with the
// Prometheus text parser, and checks that every family is contiguous and
// that the values are the engine's and the daemon's counters.
func TestMetricsScrape(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"luafw.yaml": "plugins:\n  - file: ports.lua\n  - {file: odd.lua, name: \"we\\\"ird\\\\name\"}\n",
		"ports.lua": `fw.register{hook="forward", fn=function(pkt) if pkt.dport == 23 then return fw.DROP end end}
fw.register{name="rej", hook="forward", priority=10, fn=function(pkt) if pkt.dport == 25 then return fw.REJECT end end}`,
		"odd.lua": `fw.register{hook="input", fn=function(pkt) error("always") end}`,
	}
	d := newTestDaemon(t, dir, files)

	w := d.eng.NewWorker()
	defer w.Close()
	sent := map[uint16]int{22: 7, 23: 5, 25: 3}
	for port, n := range sent {
		for range n {
			dec := w.Run(&engine.Packet{Hook: engine.Forward, Data: udpTo(t, port)})
			d.statsFor("forward@0").verdicts[dec.Verdict].Add(1) // as serve counts
		}
	}
	for range 4 {
		w.Run(&engine.Packet{Hook: engine.Input, Data: udpTo(t, 80)})
	}
	d.reloads.Add(2)

	text, fams := scrapeFamilies(t, d)
	assertContiguous(t, text)

	get := func(name string, labels map[string]string) float64 {
		t.Helper()
		f, ok := fams[name]
		if !ok {
			t.Fatalf("no family %s", name)
		}
		for _, m := range f.Metric {
			if hasLabels(m, labels) {
				switch {
				case m.Counter != nil:
					return m.Counter.GetValue()
				case m.Gauge != nil:
					return m.Gauge.GetValue()
				case m.Histogram != nil:
					return float64(m.Histogram.GetSampleCount())
				}
			}
		}
		t.Fatalf("%s%v: no such series", name, labels)
		return 0
	}
	pv := func(plugin, cb, hook, verdict string) map[string]string {
		return map[string]string{"plugin": plugin, "callback": cb, "hook": hook, "verdict": verdict}
	}
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"luafw_generation", nil, float64(d.eng.Generation())},
		{"luafw_reloads_total", map[string]string{"result": "ok"}, 2},
		{"luafw_packets_total", map[string]string{"segment": "forward@0", "verdict": "accept"}, 7},
		{"luafw_packets_total", map[string]string{"segment": "forward@0", "verdict": "drop"}, 5},
		{"luafw_packets_total", map[string]string{"segment": "forward@0", "verdict": "reject"}, 3},
		{"luafw_callback_verdicts_total", pv("ports", "ports", "forward", "drop"), 5},
		{"luafw_callback_verdicts_total", pv("ports", "ports", "forward", "accept"), 10},
		{"luafw_callback_verdicts_total", pv("ports", "rej", "forward", "reject"), 3},
		{"luafw_callback_verdicts_total", pv("ports", "rej", "forward", "accept"), 7},
		{"luafw_callback_verdicts_total", pv(`we"ird\name`, `we"ird\name`, "input", "accept"), 4},
		{"luafw_callback_failures_total", map[string]string{"plugin": `we"ird\name`, "reason": "error"}, 4},
		{"luafw_plugin_quarantined", map[string]string{"plugin": "ports"}, 0},
	}
	for _, c := range checks {
		if got := get(c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// Every callback's series equal the engine's own counters.
	for _, cs := range d.eng.Stats() {
		lbl := map[string]string{"plugin": cs.Plugin, "callback": cs.Name, "hook": cs.Hook.String()}
		if got := get("luafw_callback_latency_seconds", lbl); got != float64(cs.Timed) {
			t.Errorf("latency count %v%v, want %d", got, lbl, cs.Timed)
		}
		for v, n := range cs.Verdicts {
			if got := get("luafw_callback_verdicts_total", pv(cs.Plugin, cs.Name, cs.Hook.String(), v)); got != float64(n) {
				t.Errorf("%s/%s %s = %v, want the engine's %d", cs.Plugin, cs.Name, v, got, n)
			}
		}
	}
	if fams["luafw_callback_latency_seconds"].GetType() != dto.MetricType_HISTOGRAM {
		t.Error("callback latency is not a histogram")
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
}

// scrapeFamilies GETs the daemon's metrics handler over HTTP and parses
// the exposition with the Prometheus text parser; it returns the text and
// the families by name.
func scrapeFamilies(t *testing.T, d *Daemon) (string, map[string]*dto.MetricFamily) {
	t.Helper()
	srv := httptest.NewServer(d.MetricsHandler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("status %d, %v", resp.StatusCode, err)
	}
	text := string(body)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("the exposition does not parse: %v\n%s", err, text)
	}
	return text, fams
}

// assertContiguous fails when a family's samples are split by another
// family's, or its HELP and TYPE lines are not right before its samples.
func assertContiguous(t *testing.T, text string) {
	t.Helper()
	done := map[string]bool{}
	cur := ""
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		var fam string
		if strings.HasPrefix(line, "# ") {
			f := strings.Fields(line)
			if len(f) < 3 {
				t.Fatalf("bad comment line %q", line)
			}
			fam = f[2]
		} else {
			fam = line[:strings.IndexAny(line, "{ ")]
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base := strings.TrimSuffix(fam, suffix); base != fam && done[base] || base == cur {
					fam = base
				}
			}
		}
		if fam != cur {
			if done[fam] {
				t.Fatalf("family %s appears again after %s:\n%s", fam, cur, text)
			}
			done[cur], cur = true, fam
		}
	}
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, lp := range m.Label {
		if v, ok := want[lp.GetName()]; ok {
			if v != lp.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

func udpTo(t *testing.T, port uint16) []byte {
	t.Helper()
	b, err := packet.Build(packet.Spec{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("198.51.100.1"),
		Proto: packet.ProtoUDP, SrcPort: 4000, DstPort: port, Payload: []byte(fmt.Sprint(port))})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

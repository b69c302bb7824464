package daemon

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/luafw/luafw/internal/engine"
)

// TestHealthz: /healthz answers 503 until the daemon is ready, 200 while it
// filters, 503 while the watchdog finds a reader stuck and once shutdown
// began, each with its reason.
func TestHealthz(t *testing.T) {
	d := newTestDaemon(t, t.TempDir(), map[string]string{
		"luafw.yaml": "plugins:\n  - file: p.lua\n",
		"p.lua":      `fw.register{hook="input", fn=function(pkt) end}`,
	})
	srv := httptest.NewServer(d.HealthHandler())
	defer srv.Close()
	get := func() (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	stuck := "segment input@0 queues [1000]: inside one burst for 1s"
	for _, step := range []struct {
		name   string
		change func()
		code   int
		body   string
	}{
		{"before Run", func() {}, 503, "starting"},
		{"ready", func() { d.svc.phase.Store(phaseReady) }, 200, "ok: generation 1"},
		{"reader stuck", func() { d.svc.stuck.Store(&stuck) }, 503, "queue reader stuck: " + stuck},
		{"reader progresses", func() { d.svc.stuck.Store(nil) }, 200, "ok"},
		{"stopping", d.serviceStopping, 503, "stopping"},
	} {
		step.change()
		if code, body := get(); code != step.code || !strings.HasPrefix(body, step.body) {
			t.Errorf("%s: %d %q, want %d %q...", step.name, code, body, step.code, step.body)
		}
	}
}

// TestInfoMetrics: luafw_build_info carries the version and Go version;
// luafw_state_entries and luafw_state_bytes follow what scripts store, per
// map and bucket family.
func TestInfoMetrics(t *testing.T) {
	d := newTestDaemon(t, t.TempDir(), map[string]string{
		"luafw.yaml": "plugins:\n  - file: st.lua\n",
		"st.lua": `local seen = state.map("seen")
local per = state.bucket("per", {rate = 1, burst = 5})
local empty = state.map("empty")
fw.register{hook="forward", fn=function(pkt)
	seen:set("port" .. pkt.dport, pkt.dport)
	per:take(pkt.src)
end}`,
	})
	d.svc.version = "v9.9.9-test"
	w := d.eng.NewWorker()
	defer w.Close()
	for _, port := range []uint16{22, 23, 25, 22} {
		w.Run(&engine.Packet{Hook: engine.Forward, Data: udpTo(t, port)})
	}
	_, fams := scrapeFamilies(t, d)
	bi := fams["luafw_build_info"]
	if bi == nil || len(bi.Metric) != 1 || bi.Metric[0].GetGauge().GetValue() != 1 ||
		!hasLabels(bi.Metric[0], map[string]string{"version": "v9.9.9-test", "goversion": runtime.Version()}) {
		t.Errorf("luafw_build_info = %v, want one series of value 1 with version and goversion", bi)
	}
	value := func(fam, kind, name string) float64 {
		t.Helper()
		for _, m := range fams[fam].GetMetric() {
			if hasLabels(m, map[string]string{"scope": "node", "kind": kind, "name": name}) {
				return m.GetGauge().GetValue()
			}
		}
		t.Fatalf("no %s{kind=%q,name=%q}", fam, kind, name)
		return 0
	}
	// Three ports, one source (udpTo sends from one address).
	for _, c := range []struct {
		kind, name string
		entries    float64
	}{{"map", "seen", 3}, {"bucket", "per", 1}, {"map", "empty", 0}} {
		if got := value("luafw_state_entries", c.kind, c.name); got != c.entries {
			t.Errorf("luafw_state_entries{kind=%q,name=%q} = %v, want %v", c.kind, c.name, got, c.entries)
		}
		b := value("luafw_state_bytes", c.kind, c.name)
		if (c.entries == 0) != (b == 0) {
			t.Errorf("luafw_state_bytes{kind=%q,name=%q} = %v with %v entries", c.kind, c.name, b, c.entries)
		}
	}
}

// TestMetricsDocumented: every family the daemon exports is in
// docs/metrics.md's tables (the alert rules and the dashboard are checked
// against that page: tests/observability_test.go).
func TestMetricsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	d := newTestDaemon(t, t.TempDir(), map[string]string{
		"luafw.yaml": "plugins:\n  - file: p.lua\n",
		"p.lua":      `fw.register{hook="input", fn=function(pkt) end}`,
	})
	ch := make(chan *prometheus.Desc, 256)
	collectorList{d.Collector(), newClusterCollector(nil)}.Describe(ch)
	close(ch)
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	n := 0
	for desc := range ch {
		m := fq.FindStringSubmatch(desc.String())
		if m == nil {
			t.Fatalf("no name in %s", desc)
		}
		n++
		if !strings.Contains(string(doc), "`"+m[1]+"`") {
			t.Errorf("%s is not in docs/metrics.md", m[1])
		}
	}
	if n < 20 {
		t.Errorf("only %d families described", n)
	}
}

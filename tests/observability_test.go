package tests

import (
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// metricRef finds the metric names a PromQL expression reads: luafw's,
// the Go and process collectors', and the scrape's up.
var metricRef = regexp.MustCompile(`\b(?:luafw|go|process)_[a-z0-9_]+\b|\bup\{`)

// documentedMetrics returns the metric names docs/metrics.md writes in
// backquotes.
func documentedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range regexp.MustCompile("`([a-z_:][a-z0-9_:]*)[`{]").FindAllStringSubmatch(string(b), -1) {
		out[m[1]] = true
	}
	return out
}

// undocumented returns the metrics expr reads that docs/metrics.md does
// not name (histogram series by their family).
func undocumented(expr string, docs map[string]bool) []string {
	var out []string
	for _, name := range metricRef.FindAllString(expr, -1) {
		name = strings.TrimSuffix(name, "{")
		family := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			family = strings.TrimSuffix(family, suffix)
		}
		if !docs[name] && !docs[family] {
			out = append(out, name)
		}
	}
	return out
}

// TestAlertRules: the alerting rules load (promtool check rules), their
// unit tests pass (promtool test rules: each alert fires on its series and
// a healthy luafw raises none), and they read only documented metrics.
func TestAlertRules(t *testing.T) {
	const rules, unit = "../dist/prometheus/luafw-alerts.yaml", "../dist/prometheus/luafw-alerts_test.yaml"
	b, err := os.ReadFile(rules)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}
	docs := documentedMetrics(t)
	alerts := map[string]bool{}
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			alerts[r.Alert] = true
			if u := undocumented(r.Expr, docs); len(u) > 0 {
				t.Errorf("alert %s reads metrics docs/metrics.md does not list: %v", r.Alert, u)
			}
			if !strings.Contains(string(mustRead(t, "../docs/metrics.md")), "`"+r.Alert+"`") {
				t.Errorf("alert %s is not in docs/metrics.md's table", r.Alert)
			}
		}
	}
	// Every alert is exercised by the unit tests.
	ub := mustRead(t, unit)
	for a := range alerts {
		if !regexp.MustCompile(`alertname: ` + a + `\b`).Match(ub) {
			t.Errorf("alert %s has no test in %s", a, unit)
		}
	}

	if _, err := exec.LookPath("promtool"); err != nil {
		t.Skip("skipping the promtool checks: promtool not installed (scripts/deps.sh installs Debian's prometheus)")
	}
	for _, args := range [][]string{{"check", "rules", rules}, {"test", "rules", unit}} {
		if out, err := exec.Command("promtool", args...).CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestGrafanaDashboard: the dashboard is JSON Grafana can import (a title,
// panels with distinct ids, each query with a refId), and its queries read
// only documented metrics.
func TestGrafanaDashboard(t *testing.T) {
	var dash struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			ID      int    `json:"id"`
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Query any `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Annotations struct {
			List []struct {
				Expr string `json:"expr"`
			} `json:"list"`
		} `json:"annotations"`
	}
	dec := json.NewDecoder(strings.NewReader(string(mustRead(t, "../dist/grafana/luafw.json"))))
	if err := dec.Decode(&dash); err != nil {
		t.Fatalf("dist/grafana/luafw.json: %v", err)
	}
	if dash.Title == "" || dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatalf("dashboard without title, uid or panels")
	}
	docs := documentedMetrics(t)
	ids := map[int]bool{}
	var exprs []string
	used := map[string]bool{}
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			if q.RefID == "" || q.Expr == "" {
				t.Errorf("panel %q: a query without refId or expr", p.Title)
			}
			exprs = append(exprs, q.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		if s, ok := v.Query.(string); ok {
			exprs = append(exprs, s)
		}
	}
	for _, a := range dash.Annotations.List {
		exprs = append(exprs, a.Expr)
	}
	for _, e := range exprs {
		if u := undocumented(e, docs); len(u) > 0 {
			t.Errorf("dashboard query %q reads metrics docs/metrics.md does not list: %v", e, u)
		}
		for _, m := range metricRef.FindAllString(e, -1) {
			used[m] = true
		}
	}
	// The dashboard shows every luafw family the docs list.
	var missing []string
	for name := range docs {
		if strings.HasPrefix(name, "luafw_") && !used[name] && !used[name+"_bucket"] {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("documented metrics the dashboard does not show: %v", missing)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

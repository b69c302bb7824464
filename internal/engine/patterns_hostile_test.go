package engine

import (
	"strings"
	"testing"
	"time"
)

// TestHostilePatternsCutOff runs patterns that backtrack for minutes (or
// build huge results) on crafted payloads, inside one call of a builtin,
// under a 2 ms budget: each call must end promptly with the plugin's
// on_error verdict and be counted.
func TestHostilePatternsCutOff(t *testing.T) {
	as := strings.Repeat("a", 400)
	opens := strings.Repeat("(", 1000)
	cases := []struct {
		name, payload, code string
		timeout             bool // counted as a timeout; else as an error
	}{
		{"star", as, `pkt.payload:find("a*a*a*a*b")`, true},
		{"lazy", as, `pkt.payload:match("a-a-a-a-a-b")`, true},
		{"backref", as, `pkt.payload:match("(.-)(.-)(.-)%1%2%3b")`, true},
		{"balance", opens, `pkt.payload:find("(.-)%b()")`, true},
		{"gmatch", as, `for x in pkt.payload:gmatch("a*a*a*a*b") do end`, true},
		{"gsub-pattern", as, `pkt.payload:gsub("(a*)(a*)(a*)(a*)b", "%4%3%2%1")`, true},
		{"gsub-growth", as, `pkt.payload:gsub(".", function(c) return string.rep(c, 5000) end)`, false},
		{"gsub-table-growth", as, `pkt.payload:gsub("a", {a = string.rep("b", 4000)})`, false},
		{"gsub-string-growth", as, `pkt.payload:gsub("", string.rep("%0", 9) .. string.rep("b", 3000))`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, logs := newTestEngine(t)
			spec := src(tc.name, `fw.register{hook="input", fn=function(pkt) `+tc.code+` return fw.ACCEPT end}`)
			spec.OnError = Drop
			spec.Budget = 2 * time.Millisecond
			mustLoad(t, e, spec)
			w := e.NewWorker()
			defer w.Close()
			start := time.Now()
			d := w.Run(&Packet{Hook: Input, Data: udpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, []byte(tc.payload))})
			el := time.Since(start)
			if d.Verdict != Drop || d.Errors != 1 {
				t.Fatalf("%v errors %d, want the on_error drop", d.Verdict, d.Errors)
			}
			if el > time.Second {
				t.Fatalf("cut off only after %v", el)
			}
			var timeouts, errs uint64
			for _, s := range e.Stats() {
				timeouts += s.Timeouts
				errs += s.Errors
			}
			t.Logf("%s: %v after %v (timeouts %d, errors %d)", tc.name, d.Verdict, el, timeouts, errs)
			if tc.timeout && timeouts != 1 {
				t.Fatalf("stats: %d timeouts %d errors, want the timeout counted; logs: %s", timeouts, errs, logs)
			}
			if !tc.timeout && errs+timeouts != 1 {
				t.Fatalf("stats: %d timeouts %d errors, want one failure counted; logs: %s", timeouts, errs, logs)
			}
			if !tc.timeout && timeouts == 0 && !strings.Contains(logs.String(), "sandbox limit") {
				t.Fatalf("error is not the size limit: %s", logs)
			}
		})
	}
}

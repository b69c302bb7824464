package engine

import (
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// logLine loads a plugin whose top level runs code (which logs once) and
// returns the plugin's log line.
func logLine(t *testing.T, code string) string {
	t.Helper()
	e, buf := newTestEngine(t)
	mustLoad(t, e, src("big", code+"\nfw.register{hook='input', fn=function() end}"))
	for _, l := range strings.Split(buf.String(), "\n") {
		if strings.Contains(l, "plugin=big") {
			return l
		}
	}
	t.Fatalf("no log line of the plugin in %q", buf.String())
	return ""
}

func TestLogFieldsCapped(t *testing.T) {
	line := logLine(t, `local f = {}
		for i = 1, 10000 do f["k" .. i] = i end
		log.info("many", f)`)
	if n := strings.Count(line, " k"); n != maxLogFields {
		t.Errorf("%d fields logged, want %d: %q", n, maxLogFields, line)
	}
	if !strings.Contains(line, "fields_left_out=true") {
		t.Errorf("no fields_left_out in %q", line)
	}

	line = logLine(t, `log.info("x", {[string.rep("k", 1000)] = string.rep("v", 100000), small = "ok"})`)
	if !strings.Contains(line, " "+strings.Repeat("k", maxLogKey-3)+"...=") {
		t.Errorf("long key not cut to %d bytes: %.200q", maxLogKey, line)
	}
	if !strings.Contains(line, "="+strings.Repeat("v", maxLogValue-3)+"... ") || strings.Contains(line, strings.Repeat("v", maxLogValue)) {
		t.Errorf("long value not cut to %d bytes", maxLogValue)
	}
	if !strings.Contains(line, "small=ok") || strings.Contains(line, "fields_left_out") {
		t.Errorf("short fields: %.200q", line)
	}
}

func TestLogMessageAndPrintCapped(t *testing.T) {
	for name, code := range map[string]string{
		"log message":    `log.warn(string.rep("m", 100000))`,
		"print one":      `print(string.rep("m", 100000))`,
		"print many":     `local t = {} for i = 1, 5000 do t[i] = string.rep("m", 100) end print(unpack(t))`,
		"print numbers":  `local t = {} for i = 1, 5000 do t[i] = 1 end print(unpack(t))`,
		"multibyte text": `log.info(string.rep("é", 50000))`,
	} {
		t.Run(name, func(t *testing.T) {
			line := logLine(t, code)
			i, j := strings.Index(line, "msg="), strings.Index(line, " plugin=")
			if i < 0 || j < i {
				t.Fatalf("no msg in %.200q", line)
			}
			msg := line[i+len("msg=") : j]
			if strings.HasPrefix(msg, `"`) {
				var err error
				if msg, err = strconv.Unquote(msg); err != nil {
					t.Fatalf("msg is not a quoted string: %v", err)
				}
			}
			if len(msg) > maxLogMessage || !strings.HasSuffix(msg, "...") || !utf8.ValidString(msg) {
				t.Fatalf("message of %d bytes (cap %d), ends %q", len(msg), maxLogMessage, msg[max(0, len(msg)-10):])
			}
		})
	}
	for _, c := range []struct {
		s    string
		n    int
		want string
	}{{"aéé", 4, "a..."}, {"aéé", 5, "aéé"}, {"aééé", 6, "aé..."}, {"aééé", 5, "a..."}, {"abcdef", 5, "ab..."}, {"abcdef", 2, "..."}} {
		if got := cut(c.s, c.n); got != c.want {
			t.Errorf("cut(%q, %d) = %q, want %q", c.s, c.n, got, c.want)
		}
	}
}

// BenchmarkLogHugeFields is one log.info call with a 20,000-field table
// (the log rate limit is reset before each call).
func BenchmarkLogHugeFields(b *testing.B) {
	e := benchEngine(b)
	if err := e.Load([]PluginSpec{src("huge", `local f = {}
		local v = string.rep("v", 100)
		for i = 1, 20000 do f["k" .. i] = v end
		fw.register{hook="forward", fn=function(pkt) log.info("huge", f) end}`)}); err != nil {
		b.Fatal(err)
	}
	w := e.NewWorker()
	defer w.Close()
	p := benchPacket(b)
	w.Run(p) // the worker's state runs its top level
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		l := &e.gen.Load().plugins[0].logLimiter
		l.mu.Lock()
		l.started = false
		l.mu.Unlock()
		w.Run(p)
	}
}

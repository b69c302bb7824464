package engine

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/luafw/luafw/internal/sandbox"

	lua "github.com/luafw/luafw/lua"

	"github.com/luafw/luafw/host/packet"
)

// newTestEngine returns an engine whose logs go to the test's buffer.
func newTestEngine(t testing.TB) (*Engine, *syncBuffer) {
	t.Helper()
	var buf syncBuffer
	e := New(Options{Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	t.Cleanup(e.Close)
	return e, &buf
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// src makes a spec from Lua source. Its budget is generous: budgets are
// wall-clock time, and tests that are not about budgets must not depend on
// how busy the machine is (the budget tests set their own).
func src(name, code string) PluginSpec {
	return PluginSpec{Name: name, File: name + ".lua", Source: []byte(code), Budget: time.Second}
}

func mustLoad(t testing.TB, e *Engine, specs ...PluginSpec) {
	t.Helper()
	if err := e.Load(specs); err != nil {
		t.Fatalf("load: %v", err)
	}
}

func tcpPkt(t testing.TB, src, dst string, sport, dport uint16, flags uint8) []byte {
	t.Helper()
	b, err := packet.Build(packet.Spec{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst),
		Proto: packet.ProtoTCP, SrcPort: sport, DstPort: dport, TCPFlags: flags, Payload: []byte("hello")})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func udpPkt(t testing.TB, src, dst string, sport, dport uint16, payload []byte) []byte {
	t.Helper()
	b, err := packet.Build(packet.Spec{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst),
		Proto: packet.ProtoUDP, SrcPort: sport, DstPort: dport, Payload: payload})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOrderByPriorityThenLoadOrder(t *testing.T) {
	e, _ := newTestEngine(t)
	// Each callback appends its name to a shared tag list; the order of the
	// tags is the order the callbacks ran.
	mk := func(name string, prio string) PluginSpec {
		return src(name, `fw.register{hook="forward", priority=`+prio+`, fn=function(pkt) pkt:tag("`+name+`") end}`)
	}
	for _, g := range []struct {
		name string
		prio int
	}{{"go-mangle", PriorityMangle}, {"go-filter", PriorityFilter}} {
		if err := e.RegisterFunc(Forward, g.prio, g.name, func(c *Ctx) Verdict {
			c.Tag(g.name)
			return Accept
		}); err != nil {
			t.Fatal(err)
		}
	}
	mustLoad(t, e,
		mk("late", "fw.priority.srcnat"),
		mk("filter-a", "0"),
		mk("raw", `"raw"`),
		mk("filter-b", "fw.priority.filter"),
		mk("custom", "-120"),
	)
	d := e.Process(&Packet{Hook: Forward, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1000, 80, packet.TCPSyn)})
	want := []string{"raw", "go-mangle", "custom", "go-filter", "filter-a", "filter-b", "late"}
	if strings.Join(d.Tags, ",") != strings.Join(want, ",") {
		t.Fatalf("order = %v, want %v", d.Tags, want)
	}
	// Chains() reports the same order.
	var names []string
	for _, ci := range e.Chains() {
		if ci.Hook == Forward {
			names = append(names, ci.Name)
		}
	}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("Chains() order = %v, want %v", names, want)
	}
}

// TestOrderManyRegistrations: ties keep load order however many callbacks a
// plugin registers. The tie-breaker once packed plugin and callback indices
// as 1<<30 + pi<<12 + ri, so a plugin's 4,097th callback sorted after the
// next plugin's first. A plugin now registers at most MaxRegistrations
// callbacks; the test keeps to that.
func TestOrderManyRegistrations(t *testing.T) {
	e, _ := newTestEngine(t)
	const n = MaxRegistrations
	mustLoad(t, e,
		src("many", `for i = 1, `+strconv.Itoa(n)+` do fw.register{hook="forward", name="m"..i, fn=function() end} end`),
		src("after", `fw.register{hook="forward", name="last", fn=function() end}`),
	)
	var names []string
	for _, ci := range e.Chains() {
		if ci.Hook == Forward {
			names = append(names, ci.Plugin+"/"+ci.Name)
		}
	}
	if len(names) != n+1 {
		t.Fatalf("%d callbacks in forward, want %d", len(names), n+1)
	}
	for i := 0; i < n; i++ {
		if want := "many/m" + strconv.Itoa(i+1); names[i] != want {
			t.Fatalf("position %d = %s, want %s", i, names[i], want)
		}
	}
	if names[n] != "after/last" {
		t.Fatalf("last = %s, want after/last", names[n])
	}
}

func TestVerdicts(t *testing.T) {
	cases := []struct {
		ret      string
		want     Verdict
		laterRan bool
	}{
		{"fw.ACCEPT", Accept, true},
		{"nil", Accept, true},
		{"fw.DROP", Drop, false},
		{"fw.STOP", Stop, false},
		{"fw.REJECT", Reject, false},
		{"fw.REPEAT", Repeat, false},
		{`"drop"`, Drop, false},
	}
	for _, tc := range cases {
		t.Run(tc.ret, func(t *testing.T) {
			e, _ := newTestEngine(t)
			mustLoad(t, e,
				src("first", `fw.register{hook="input", fn=function(pkt) return `+tc.ret+` end}`),
				src("second", `fw.register{hook="input", priority=10, fn=function(pkt) pkt:tag("second") end}`),
			)
			d := e.Process(&Packet{Hook: Input, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1000, 22, packet.TCPSyn)})
			if d.Verdict != tc.want {
				t.Errorf("verdict = %v, want %v", d.Verdict, tc.want)
			}
			if ran := len(d.Tags) == 1; ran != tc.laterRan {
				t.Errorf("later callback ran = %v, want %v", ran, tc.laterRan)
			}
			wantBy := "first"
			if tc.want == Accept {
				wantBy = ""
			}
			if d.By != wantBy {
				t.Errorf("by = %q, want %q", d.By, wantBy)
			}
		})
	}
}

func TestOtherHooksUntouched(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e, src("dropper", `fw.register{hook={"input","forward"}, fn=function() return fw.DROP end}`))
	data := tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, packet.TCPSyn)
	for _, h := range Hooks() {
		d := e.Process(&Packet{Hook: h, Data: data})
		want := Accept
		if h == Input || h == Forward {
			want = Drop
		}
		if d.Verdict != want {
			t.Errorf("%v: verdict %v, want %v", h, d.Verdict, want)
		}
	}
}

func TestMarksWithMasks(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e,
		src("a", `fw.register{hook="output", fn=function(pkt) pkt:set_mark(0xff00, 0xff00) end}`),
		src("b", `fw.register{hook="output", priority=1, fn=function(pkt)
			if pkt.mark ~= 0xff0f then error("b saw mark " .. pkt.mark) end
			pkt:set_mark(0x1, 0x0f)
		end}`),
	)
	d := e.Process(&Packet{Hook: Output, Mark: 0x0f0f, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, 0)})
	if d.Errors != 0 {
		t.Fatalf("errors: %d", d.Errors)
	}
	if !d.MarkSet || d.Mark != 0xff01 {
		t.Fatalf("mark = %#x set=%v, want 0xff01", d.Mark, d.MarkSet)
	}
	// Without set_mark the mark is reported unchanged.
	mustLoad(t, e, src("none", `fw.register{hook="output", fn=function(pkt) end}`))
	d = e.Process(&Packet{Hook: Output, Mark: 7, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, 0)})
	if d.MarkSet || d.Mark != 7 {
		t.Fatalf("untouched mark = %#x set=%v", d.Mark, d.MarkSet)
	}
}

func TestTagsAcrossCallbacksAndHooks(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e,
		src("tagger", `fw.register{hook="prerouting", fn=function(pkt) if pkt.dport == 22 then pkt:tag("ssh") end end}`),
		src("same-hook", `fw.register{hook="prerouting", priority=5, fn=function(pkt) if pkt:tagged("ssh") then pkt:set_mark(1) end end}`),
		src("later-hook", `fw.register{hook="forward", fn=function(pkt) if pkt:tagged("ssh") then return fw.DROP end end}`),
	)
	data := tcpPkt(t, "10.0.0.1", "10.0.0.2", 1000, 22, packet.TCPSyn)
	d := e.Process(&Packet{Hook: Prerouting, Data: data})
	if d.Mark != 1 || len(d.Tags) != 1 || d.Tags[0] != "ssh" {
		t.Fatalf("prerouting: mark %d tags %v", d.Mark, d.Tags)
	}
	d2 := e.Process(&Packet{Hook: Forward, Data: data, Tags: d.Tags, Mark: d.Mark})
	if d2.Verdict != Drop || d2.By != "later-hook" {
		t.Fatalf("forward with tags: %v by %q", d2.Verdict, d2.By)
	}
	d3 := e.Process(&Packet{Hook: Forward, Data: data})
	if d3.Verdict != Accept {
		t.Fatalf("forward without tags: %v", d3.Verdict)
	}
}

func TestPacketView(t *testing.T) {
	e, _ := newTestEngine(t)
	data := tcpPkt(t, "2001:db8::1", "2001:db8::2", 4444, 22, packet.TCPSyn|packet.TCPAck)
	want := "input|6|2001:db8::1|2001:db8::2|tcp|4444|22|" + itoa(len(data)) + "|64|true|true|hello|eth0|-|9|1000|established|5|" + itoa(len(data)) + "|96"
	spec := src("view", `
fw.register{hook="input", fn=function(pkt)
	local got = table.concat({pkt.hook, pkt.family, pkt.src, pkt.dst, pkt.proto, pkt.sport, pkt.dport,
		pkt.len, pkt.ttl, tostring(pkt.tcp.syn), tostring(pkt.tcp.ack), pkt.payload, pkt.indev or "-",
		pkt.outdev or "-", pkt.mark, pkt.uid or "-", pkt.ct.state or "-", pkt.ct.mark or "-",
		#pkt:bytes(), pkt:bytes(0, 1):byte()}, "|")
	if got ~= fw.options.want then error("got " .. got) end
	return fw.DROP
end}`)
	spec.Options = map[string]any{"want": want}
	mustLoad(t, e, spec)
	d := e.Process(&Packet{Hook: Input, Data: data, InDev: "eth0", Mark: 9, UID: 1000, HasUID: true,
		CTState: CTEstablished, CTMark: 5, CTMarkKnown: true})
	if d.Verdict != Drop || d.Errors != 0 {
		t.Fatalf("view mismatch: verdict %v errors %d (see log)", d.Verdict, d.Errors)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestUnknownFieldIsAnError(t *testing.T) {
	e, logs := newTestEngine(t)
	// Computed at run time: written out, the static checks refuse it at load.
	mustLoad(t, e, src("typo", `fw.register{hook="input", fn=function(pkt) if pkt["dp" .. "rot"] == 22 then return fw.DROP end end}`))
	d := e.Process(&Packet{Hook: Input, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 22, 0)})
	if d.Errors != 1 || d.Verdict != Accept {
		t.Fatalf("errors %d verdict %v", d.Errors, d.Verdict)
	}
	if !strings.Contains(logs.String(), `typo.lua:1: pkt.dprot: no such field in pkt (did you mean pkt.dport?)`) {
		t.Fatalf("log does not name the field: %s", logs.String())
	}
}

func TestConntrackUpdates(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e,
		src("ct", `fw.register{hook="forward", fn=function(pkt)
			if pkt.ct.state == "new" then
				pkt.ct:set_mark(0x10, 0xf0)
				pkt.ct:set_timeout(300)
				pkt.ct:set_label(3)
				pkt.ct:set_label(70)
			end
		end}`),
		src("reader", `fw.register{hook="forward", priority=1, fn=function(pkt)
			if pkt.ct.mark ~= 0x13 then error("ct.mark " .. tostring(pkt.ct.mark)) end
		end}`),
	)
	d := e.Process(&Packet{Hook: Forward, CTState: CTNew, CTMark: 0x03, CTMarkKnown: true, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, packet.TCPSyn)})
	if d.Errors != 0 {
		t.Fatalf("errors %d", d.Errors)
	}
	u := d.CT
	if !u.SetMark || u.Mark != 0x10 || u.MarkMask != 0xf0 || !u.SetTimeout || u.Timeout != 300 || !u.SetLabels ||
		u.Labels[0] != 1<<3 || u.Labels[1] != 1<<6 {
		t.Fatalf("ct update = %+v", u)
	}
}

// fakeCT answers ct mark lookups.
type fakeCT struct{ calls int }

func (f *fakeCT) CTMark(c *Ctx) (uint32, bool) {
	f.calls++
	return 0x77, true
}

func TestCTMarkLookedUpLazilyOnce(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e,
		src("a", `fw.register{hook="input", fn=function(pkt) if pkt.ct.mark ~= 0x77 then return fw.DROP end end}`),
		src("b", `fw.register{hook="input", fn=function(pkt) if pkt.ct.mark ~= 0x77 then return fw.DROP end end}`),
		src("c", `fw.register{hook="output", fn=function(pkt) end}`),
	)
	w := e.NewWorker()
	defer w.Close()
	f := &fakeCT{}
	w.SetCTSource(f)
	data := tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, 0)
	if d := w.Run(&Packet{Hook: Input, Data: data}); d.Verdict != Accept {
		t.Fatalf("verdict %v", d.Verdict)
	}
	if f.calls != 1 {
		t.Fatalf("lookups = %d, want 1", f.calls)
	}
	w.Run(&Packet{Hook: Output, Data: data})
	if f.calls != 1 {
		t.Fatalf("a packet nobody asked about was looked up")
	}
}

func TestMalformedPacketsNeverPanic(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e, src("reads-all", `fw.register{hook="input", fn=function(pkt)
		local _ = {pkt.family, pkt.src, pkt.dst, pkt.proto, pkt.sport, pkt.dport, pkt.len, pkt.ttl,
			pkt.tcp.syn, pkt.payload, pkt:bytes(10, 1000), pkt:bytes(-1), pkt.icmp_type, pkt.fragment}
	end}`))
	full := tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, packet.TCPSyn)
	full6 := udpPkt(t, "2001:db8::1", "2001:db8::2", 1, 53, []byte("query"))
	inputs := [][]byte{nil, {}, {0x45}, {0x60, 0, 0}, bytes.Repeat([]byte{0xff}, 60)}
	for i := range full {
		inputs = append(inputs, full[:i])
	}
	for i := range full6 {
		inputs = append(inputs, full6[:i])
	}
	w := e.NewWorker()
	defer w.Close()
	for i, in := range inputs {
		d := w.Run(&Packet{Hook: Input, Data: in})
		if d.Errors != 0 {
			t.Fatalf("input %d (%d bytes): the script failed reading a malformed packet", i, len(in))
		}
	}
}

func TestLoadErrorsNameFileAndLine(t *testing.T) {
	cases := []struct {
		name, code, want string
		line             int
	}{
		{"syntax", "fw.register{hook='input', fn=function(pkt)\n  return fw.DROP\nend", "'}' expected (to close '{' at line 1) near <eof>", 3},
		{"runtime", "local x = nil\nx.y = 1", "attempt to index", 2},
		{"badhook", "fw.register{hook='inptu', fn=function() end}", `unknown hook "inptu"`, 1},
		{"ingress", "\n\nfw.register{hook='ingress', fn=function() end}", `hook "ingress" is a netdev hook: NFQUEUE cannot queue packets from it`, 3},
		{"egress", "fw.register{hook={'output', 'Egress'}, fn=function() end}", `use nftables netdev rules and sets`, 1},
		{"badprio", "\nfw.register{hook='input', priority='nope', fn=function() end}", `unknown priority "nope"`, 2},
		{"nofn", "fw.register{hook='input'}", "fn (the callback function) is missing", 1},
		{"typo", "fw.register{hook='input', fun=function() end}", `unknown field "fun"`, 1},
		{"loop", "while true do end", "did not finish", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := newTestEngine(t)
			err := e.Load([]PluginSpec{src(tc.name, tc.code)})
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("err = %v, want a *LoadError", err)
			}
			if le.Line != tc.line || !strings.Contains(le.Reason, tc.want) || le.File != tc.name+".lua" {
				t.Fatalf("got %q (line %d), want line %d and %q", err, le.Line, tc.line, tc.want)
			}
			if tc.line > 0 && !strings.HasPrefix(err.Error(), tc.name+".lua:"+itoa(tc.line)+": ") {
				t.Fatalf("message %q does not start with file:line", err)
			}
		})
	}
}

func TestLoadFromFileAndNetLoad(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "block.txt"), []byte("# bad hosts\n10.9.0.0/16\n192.0.2.7\n2001:db8:bad::/48\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "bl.lua"), []byte(`
local bad = net.load("block.txt")
local mine = net.cidr("10.0.0.0/8")
local list = net.set{"198.51.100.1", "203.0.113.0/24"}
fw.register{hook="input", fn=function(pkt)
	if bad:contains(pkt.src) then return fw.DROP end
	if list:contains(pkt.src) then return fw.REJECT end
	if not mine:contains(pkt.src) then return fw.STOP end
end}`), 0o644)
	e, _ := newTestEngine(t)
	mustLoad(t, e, PluginSpec{File: filepath.Join(dir, "bl.lua")})
	for src, want := range map[string]Verdict{"10.9.3.4": Drop, "10.1.1.1": Accept, "192.0.2.7": Drop,
		"203.0.113.9": Reject, "8.8.8.8": Stop} {
		d := e.Process(&Packet{Hook: Input, Data: tcpPkt(t, src, "10.0.0.2", 1, 2, 0)})
		if d.Verdict != want {
			t.Errorf("%s: %v, want %v", src, d.Verdict, want)
		}
	}
	d := e.Process(&Packet{Hook: Input, Data: tcpPkt(t, "2001:db8:bad::1", "2001:db8::2", 1, 2, 0)})
	if d.Verdict != Drop {
		t.Errorf("IPv6 blocklisted: %v", d.Verdict)
	}
	if got := e.Chains()[0].Plugin; got != "bl" {
		t.Errorf("default plugin name = %q, want bl", got)
	}
}

func TestReloadFailureKeepsOldChain(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e, src("old", `fw.register{hook="input", fn=function() return fw.DROP end}`))
	w := e.NewWorker()
	defer w.Close()
	data := tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, 0)
	if d := w.Run(&Packet{Hook: Input, Data: data}); d.Verdict != Drop {
		t.Fatal("old chain not running")
	}
	gen := e.Generation()
	err := e.Load([]PluginSpec{
		src("good", `fw.register{hook="input", fn=function() return fw.ACCEPT end}`),
		src("broken", "fw.register{hook='input', fn=function() return fw.ACCEPT end}\nthis is not lua"),
	})
	if err == nil || !strings.Contains(err.Error(), "broken.lua:2:") {
		t.Fatalf("reload error = %v, want one naming broken.lua:2", err)
	}
	if e.Generation() != gen {
		t.Fatal("a failed reload changed the running set")
	}
	if d := w.Run(&Packet{Hook: Input, Data: data}); d.Verdict != Drop || d.By != "old" {
		t.Fatalf("after failed reload: %v by %q", d.Verdict, d.By)
	}
	// A good reload takes effect in the running worker.
	mustLoad(t, e, src("new", `fw.register{hook="input", fn=function() return fw.REJECT end}`))
	if d := w.Run(&Packet{Hook: Input, Data: data}); d.Verdict != Reject || d.By != "new" {
		t.Fatalf("after reload: %v by %q", d.Verdict, d.By)
	}
}

func TestReloadKeepsSharedState(t *testing.T) {
	e, _ := newTestEngine(t)
	code := `local hits = state.map("hits")
fw.register{hook="input", fn=function(pkt) if hits:incr(pkt.src) > 2 then return fw.DROP end end}`
	mustLoad(t, e, src("count", code))
	data := tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, 0)
	e.Process(&Packet{Hook: Input, Data: data})
	e.Process(&Packet{Hook: Input, Data: data})
	mustLoad(t, e, src("count", code))
	if d := e.Process(&Packet{Hook: Input, Data: data}); d.Verdict != Drop {
		t.Fatalf("third packet after reload: %v (state lost?)", d.Verdict)
	}
}

func TestOnErrorAndQuarantine(t *testing.T) {
	e, logs := newTestEngine(t)
	bad := src("flaky", `fw.register{hook="input", fn=function(pkt) error("boom") end}`)
	bad.OnError = Drop
	bad.QuarantineAfter = 3
	bad.QuarantineFor = time.Hour
	mustLoad(t, e, bad, src("after", `fw.register{hook="input", priority=10, fn=function(pkt) pkt:tag("after") end}`))
	data := tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, 0)
	for i := 0; i < 5; i++ {
		d := e.Process(&Packet{Hook: Input, Data: data})
		if d.Verdict != Drop || d.By != "flaky" || d.Errors != 1 {
			t.Fatalf("packet %d: %v by %q errors %d", i, d.Verdict, d.By, d.Errors)
		}
	}
	st := e.Plugins()
	if !st[0].Quarantined {
		t.Fatalf("plugin not quarantined: %+v", st)
	}
	if !strings.Contains(logs.String(), "plugin quarantined") || !strings.Contains(logs.String(), "flaky.lua:1: boom") {
		t.Fatalf("logs lack quarantine or file:line: %s", logs.String())
	}
	var calls, skipped, errs uint64
	for _, s := range e.Stats() {
		if s.Plugin == "flaky" {
			calls, skipped, errs = s.Calls, s.Skipped, s.Errors
		}
	}
	if errs != 3 || skipped != 2 || calls != 5 {
		t.Fatalf("stats: calls %d errors %d skipped %d", calls, errs, skipped)
	}

	// on_error accept passes the packet on to the next callback.
	e2, _ := newTestEngine(t)
	mustLoad(t, e2, src("flaky", `fw.register{hook="input", fn=function(pkt) error("boom") end}`),
		src("after", `fw.register{hook="input", priority=10, fn=function(pkt) return fw.DROP end}`))
	if d := e2.Process(&Packet{Hook: Input, Data: data}); d.Verdict != Drop || d.By != "after" || d.Errors != 1 {
		t.Fatalf("on_error accept: %v by %q", d.Verdict, d.By)
	}
}

func TestEndlessLoopIsCutOff(t *testing.T) {
	e, logs := newTestEngine(t)
	spec := src("spin", `fw.register{hook="input", fn=function(pkt)
		if pkt.dport == 1 then while true do end end
		if pkt.dport == 2 then while true do pcall(function() while true do end end) end end
		return fw.STOP
	end}`)
	spec.OnError = Drop
	spec.Budget = 5 * time.Millisecond
	mustLoad(t, e, spec)
	w := e.NewWorker()
	defer w.Close()
	for _, port := range []uint16{1, 2} {
		start := time.Now()
		d := w.Run(&Packet{Hook: Input, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, port, 0)})
		if d.Verdict != Drop || d.Errors != 1 {
			t.Fatalf("port %d: %v errors %d", port, d.Verdict, d.Errors)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Fatalf("port %d: cut off only after %v", port, el)
		}
	}
	if !strings.Contains(logs.String(), "exceeded its budget") {
		t.Fatalf("no budget log: %s", logs.String())
	}
	// The worker still works afterwards.
	if d := w.Run(&Packet{Hook: Input, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 3, 0)}); d.Verdict != Stop || d.Errors != 0 {
		t.Fatalf("after cut-off: %v errors %d", d.Verdict, d.Errors)
	}
}

func TestMemoryBombsRefused(t *testing.T) {
	bombs := map[string]string{
		"rep":       `local s = string.rep("x", 1e9)`,
		"rep-meth":  `local s = ("x"):rep(1e8)`,
		"gsub":      `local s = string.rep("a", 1000); s = s:gsub("a", string.rep("b", 2000))`,
		"format":    `local s = string.format("%999999999d", 1)`,
		"concat":    `local s = "x" while true do s = s .. s end`,
		"table":     `local t = {} local i = 0 while true do i = i + 1; t[i] = i end`,
		"unpack":    `local t = {} ; print(unpack(t, 1, 1e8))`,
		"recursion": `local function f() return 1 + f() end f()`,
	}
	for name, code := range bombs {
		t.Run(name, func(t *testing.T) {
			e, _ := newTestEngine(t)
			spec := src(name, `fw.register{hook="input", fn=function(pkt) `+code+` return fw.ACCEPT end}`)
			spec.OnError = Drop
			spec.Budget = 20 * time.Millisecond
			mustLoad(t, e, spec)
			d := e.Process(&Packet{Hook: Input, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, 0)})
			if d.Verdict != Drop || d.Errors != 1 {
				t.Fatalf("%s: %v errors %d, want the on_error drop", name, d.Verdict, d.Errors)
			}
		})
	}
}

func TestSandboxEscapesRefused(t *testing.T) {
	escapes := map[string]string{
		"io":               `io.open("/etc/passwd")`,
		"os.execute":       `os.execute("id")`,
		"os.exit":          `os.exit(1)`,
		"os.getenv":        `os.getenv("HOME")`,
		"os.remove":        `os.remove("/tmp/x")`,
		"require":          `require("os")`,
		"package":          `package.loadlib("x", "y")`,
		"debug":            `debug.getregistry()`,
		"load":             `load("return 1")()`,
		"loadstring":       `loadstring("return 1")()`,
		"dofile":           `dofile("/etc/passwd")`,
		"loadfile":         `loadfile("/etc/passwd")`,
		"collectgarbage":   `collectgarbage("collect")`,
		"string.dump":      `string.dump(function() end)`,
		"setfenv":          `setfenv(1, {})`,
		"getfenv":          `getfenv(1)`,
		"write builtin":    `string.upper = function() return "x" end`,
		"rawset builtin":   `rawset(string, "upper", print)`,
		"string metatable": `getmetatable("").__index.upper = print`,
		"write fw":         `fw.DROP = 1`,
		"write pkt":        `local p = setmetatable({}, {}) ; fw.register = nil`,
		"coroutine":        `coroutine.create(function() end)`,
		"channel":          `channel.make()`,
		"setmetatable str": `setmetatable(string, {})`,
	}
	for name, code := range escapes {
		t.Run(name, func(t *testing.T) {
			e, _ := newTestEngine(t)
			err := e.Load([]PluginSpec{src("esc", code)})
			if err == nil {
				t.Fatalf("%s: loaded without error", name)
			}
			if !strings.HasPrefix(err.Error(), "esc.lua:1: ") {
				t.Fatalf("%s: error %q lacks file:line", name, err)
			}
		})
	}
	// Allowed: os.time, os.clock, string methods, collectgarbage("count"),
	// the clock module.
	e, _ := newTestEngine(t)
	mustLoad(t, e, src("ok", `local t = os.time() + os.clock(); local s = ("abc"):upper()
		local kb = collectgarbage("count"); local now = time.now()
		assert(s == "ABC" and kb > 0 and now > 0)
		fw.register{hook="input", fn=function() end}`))
}

func TestConstantTablesIterate(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e, src("consts", `
		assert(#fw.hooks == 5)
		local n = 0
		for name, v in pairs(fw.priority) do n = n + 1 end
		assert(n == 7 and fw.priority.raw == -300)
		fw.register{hook = fw.hooks, fn = function(pkt) pkt:tag(pkt.hook) end}`))
	if got := len(e.Chains()); got != 5 {
		t.Fatalf("hook = fw.hooks registered on %d hooks, want 5", got)
	}
}

func TestOptionHelpers(t *testing.T) {
	e, _ := newTestEngine(t)
	spec := src("opts", `
		assert(fw.option("port", 22, "number") == 2222)
		assert(fw.option("missing", "dflt") == "dflt")
		assert(fw.option("missing") == nil)
		local l = fw.list(fw.option("hosts"))
		assert(#l == 1 and l[1] == "a")
		assert(#fw.list(nil) == 0 and #fw.list({1, 2}) == 2)
		fw.register{hook="input", fn=function() end}`)
	spec.Options = map[string]any{"port": 2222, "hosts": "a"}
	mustLoad(t, e, spec)
	bad := src("opts", "local p = fw.option('port', 22, 'number')\nfw.register{hook='input', fn=function() end}")
	bad.Options = map[string]any{"port": "ssh"}
	err := e.Load([]PluginSpec{bad})
	if err == nil || !strings.Contains(err.Error(), "opts.lua:1: opts: option port must be a number, not a string") {
		t.Fatalf("bad option: %v", err)
	}
}

func TestDomains(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e, src("dom", `
		local d = net.domains{"Example.COM.", "*.ads.test", ".tracker.test"}
		assert(d:size() == 3)
		assert(d:match("example.com") == "example.com")
		assert(d:match("a.b.EXAMPLE.com.") == "example.com")
		assert(d:match("ads.test") == "ads.test" and d:match("x.ads.test") == "ads.test")
		assert(d:match("notexample.com") == nil and d:match("com") == nil and d:match("") == nil)
		local marks = net.domains{["video.test"] = 0x10, ["a.video.test"] = 0x20}
		local name, mark = marks:match("x.a.video.test")
		assert(name == "a.video.test" and mark == 0x20)
		fw.register{hook="input", fn=function() end}`))
	for code, want := range map[string]string{
		"net.domains{5}":          "entry 1: 5 is not a name",
		"net.domains{'ok', '*.'}": "entry 2: empty name",
		"net.domains{[true] = 1}": "is not a name",
	} {
		err := e.Load([]PluginSpec{src("bad", code)})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", code, err, want)
		}
	}
}

func BenchmarkDomainMatch(b *testing.B) {
	d, _ := newDomainSet(func() *lua.LTable {
		L := lua.NewState()
		t := L.NewTable()
		for _, n := range []string{"example.com", "ads.test", "tracker.test", "video.test"} {
			t.Append(lua.LString(n))
		}
		return t
	}())
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		d.match("a.b.c.d.nothing.example.org")
	}
}

func TestModuleMethodsCheckTheirReceiver(t *testing.T) {
	e, _ := newTestEngine(t)
	for code, want := range map[string]string{
		`state.counter("c").incr(state.map("m"))`:                       "not a state counter",
		`state.map("m").get(state.counter("c"), "k")`:                   "not a state map",
		`net.cidr("10.0.0.0/8").contains(net.domains{"x"}, "10.0.0.1")`: "not a net set",
		`net.domains{"x"}.match(net.cidr("10.0.0.0/8"), "x")`:           "not a domain set",
	} {
		err := e.Load([]PluginSpec{src("recv", code)})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", code, err, want)
		}
	}
}

func TestBitModule(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e, src("bits", `
		assert(bit.band(0xff0f, 0x0ff0) == 0x0f00)
		assert(bit.bor(1, 2, 4) == 7)
		assert(bit.bxor(0xff, 0x0f) == 0xf0)
		assert(bit.bnot(0) == 0xffffffff)
		assert(bit.lshift(1, 31) == 0x80000000)
		assert(bit.rshift(0x80000000, 31) == 1)
		assert(bit.btest(0x300, 0x100) and not bit.btest(0x300, 0x400))
		assert(bit.tohex(255) == "0x000000ff")
		assert(bit.band(-1, 0xff) == 0xff)
		fw.register{hook="input", fn=function(pkt) if bit.btest(pkt.mark, 0x100) then return fw.DROP end end}`))
	if d := e.Process(&Packet{Hook: Input, Mark: 0x300, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, 0)}); d.Verdict != Drop {
		t.Fatalf("bit test on the mark: %v", d.Verdict)
	}
	if err := e.Load([]PluginSpec{src("bad", "bit.band(1.5, 1)")}); err == nil || !strings.Contains(err.Error(), "fits 32 bits") {
		t.Fatalf("fractional argument: %v", err)
	}
}

func TestPluginsHaveSeparateGlobals(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e,
		src("a", `secret = 42; fw.register{hook="input", fn=function() end}`),
		src("b", `fw.register{hook="input", fn=function() if secret ~= nil then return fw.DROP end end}`),
	)
	if d := e.Process(&Packet{Hook: Input, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, 0)}); d.Verdict != Accept {
		t.Fatal("plugin b saw plugin a's global")
	}
}

func TestGoCallbackPanicIsContained(t *testing.T) {
	e, _ := newTestEngine(t)
	e.RegisterFunc(Input, 0, "panics", func(c *Ctx) Verdict { panic("oops") })
	mustLoad(t, e, src("after", `fw.register{hook="input", priority=5, fn=function() return fw.DROP end}`))
	d := e.Process(&Packet{Hook: Input, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, 0)})
	if d.Verdict != Drop || d.Errors != 1 {
		t.Fatalf("%v errors %d", d.Verdict, d.Errors)
	}
}

func TestCustomModule(t *testing.T) {
	e := New(Options{Modules: []Module{{Name: "geo", Open: func(L *lua.LState) lua.LValue {
		t := L.NewTable()
		t.RawSetString("country", L.NewFunction(func(L *lua.LState) int {
			if strings.HasPrefix(L.CheckString(1), "192.0.2.") {
				L.Push(lua.LString("XX"))
			} else {
				L.Push(lua.LString("ZZ"))
			}
			return 1
		}))
		return t
	}}}})
	defer e.Close()
	mustLoad(t, e, src("geo", `fw.register{hook="input", fn=function(pkt) if geo.country(pkt.src) == "XX" then return fw.DROP end end}`))
	if d := e.Process(&Packet{Hook: Input, Data: tcpPkt(t, "192.0.2.1", "10.0.0.2", 1, 2, 0)}); d.Verdict != Drop {
		t.Fatalf("module not used: %v", d.Verdict)
	}
}

func TestRunRange(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e,
		src("raw", `fw.register{hook="prerouting", priority="raw", fn=function(pkt) pkt:tag("raw") end}`),
		src("filter", `fw.register{hook="prerouting", priority=0, fn=function(pkt) pkt:tag("filter") end}`))
	w := e.NewWorker()
	defer w.Close()
	d := w.RunRange(&Packet{Hook: Prerouting, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, 0)}, -300, -200)
	if strings.Join(d.Tags, ",") != "raw" {
		t.Fatalf("range [-300,-200) ran %v", d.Tags)
	}
	hp := e.HookPriorities()
	if len(hp[Prerouting]) != 2 || hp[Prerouting][0] != -300 || hp[Prerouting][1] != 0 {
		t.Fatalf("HookPriorities = %v", hp)
	}
}

func TestConcurrentWorkersAndReload(t *testing.T) {
	e, logs := newTestEngine(t)
	// Budgets are wall-clock time: with more workers than cores a callback
	// can be descheduled past 2ms, so this test (about reloads under
	// concurrency, not budgets) gives it room.
	spec := src("c", `local n = state.counter("seen")
		fw.register{hook="input", fn=function(pkt) n:incr() if pkt.dport == 23 then return fw.DROP end end}`)
	spec.Budget = 10 * time.Second
	mustLoad(t, e, spec)
	data := tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 23, 0)
	var wg sync.WaitGroup
	const workers, per = 4, 2000
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := e.NewWorker()
			defer w.Close()
			for j := 0; j < per; j++ {
				if d := w.Run(&Packet{Hook: Input, Data: data}); d.Verdict != Drop {
					t.Errorf("verdict %v", d.Verdict)
					return
				}
			}
		}()
	}
	for i := 0; i < 5; i++ {
		mustLoad(t, e, spec)
	}
	wg.Wait()
	if t.Failed() {
		t.Log(logs.String())
	}
	if got := e.State().Counter("seen").Get(); got != workers*per {
		t.Fatalf("counter = %d, want %d", got, workers*per)
	}
}

// luafw's own values print as before (pkt by name), others by id; print and
// log show ids too.
func TestToStringOfLuafwValues(t *testing.T) {
	e, logs := newTestEngine(t)
	mustLoad(t, e, src("names", `
		local set = net.set{"10.0.0.0/8"}
		fw.register{hook = "input", fn = function(pkt)
			pkt:tag(tostring(pkt))
			pkt:tag(tostring(pkt.tcp))
			pkt:tag(string.format("%s", pkt.ct))
			pkt:tag(tostring(set))
			print("printed", {})
			log.info("logged", {t = {}})
		end}`))
	d := e.Process(&Packet{Hook: Input, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, 0)})
	if len(d.Tags) != 4 || d.Tags[0] != "pkt" || d.Tags[1] != "pkt.tcp" || d.Tags[2] != "pkt.ct" ||
		!regexp.MustCompile(`^userdata: 0x[0-9a-f]{16}$`).MatchString(d.Tags[3]) {
		t.Fatalf("tags %q (errors %d)", d.Tags, d.Errors)
	}
	out := logs.String()
	id := `table: 0x[0-9a-f]{16}\b`
	if !regexp.MustCompile(`msg="printed\\t`+id).MatchString(out) || !regexp.MustCompile(`t="`+id).MatchString(out) {
		t.Fatalf("logs do not show ids:\n%s", out)
	}
}

// A long list from the configuration reads like any Lua list, past the
// array bound too.
func TestLongOptionList(t *testing.T) {
	e, _ := newTestEngine(t)
	list := make([]any, sandbox.MaxArrayIndex+100)
	for i := range list {
		list[i] = i + 1
	}
	list[1] = nil
	spec := src("opts", `
		local l = fw.options.list
		assert(l[1] == 1 and l[2] == nil and l[3] == 3, "the nil keeps its place")
		assert(l[%d] == %d and table.getn(l) == %d, "reads past the array part")
		fw.register{hook = "input", fn = function() end}`)
	n := len(list)
	spec.Source = []byte(fmt.Sprintf(string(spec.Source), n, n, n))
	spec.Options = map[string]any{"list": list}
	mustLoad(t, e, spec)
}

// Ids are a permutation of addresses: neighbouring addresses (as a heap
// hands out) never share an id, and two states name the same address
// differently.

// The chain's order does not depend on how many callbacks a plugin has,
// beyond the registration cap too: the old tie-breaker (1<<30 + pi<<12 +
// ri) sorted a plugin's 4,097th callback after the next plugin's. Built
// directly, since fw.register stops at MaxRegistrations.
func TestChainOrderBeyondRegistrationCap(t *testing.T) {
	e, _ := newTestEngine(t)
	const n = 4100
	many := &plugin{spec: PluginSpec{Name: "many"}}
	for i := 0; i < n; i++ {
		many.regs = append(many.regs, registration{name: "m" + strconv.Itoa(i), hooks: []Hook{Forward}})
	}
	after := &plugin{spec: PluginSpec{Name: "after"}, index: 1,
		regs: []registration{{name: "last", hooks: []Hook{Forward}}}}
	e.loadMu.Lock()
	g := e.build([]*plugin{many, after})
	e.loadMu.Unlock()
	chain := g.chains[Forward]
	if len(chain) != n+1 {
		t.Fatalf("%d entries, want %d", len(chain), n+1)
	}
	for i := 0; i < n; i++ {
		if chain[i].owner != "many" || chain[i].reg != i {
			t.Fatalf("position %d: %s/%d, want many/%d", i, chain[i].owner, chain[i].reg, i)
		}
	}
	if chain[n].owner != "after" {
		t.Fatalf("last: %s, want after", chain[n].owner)
	}
}

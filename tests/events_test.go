package tests

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/luafw/luafw/daemon/observe"
	"github.com/luafw/luafw/pcap"
	"github.com/luafw/luafw/tests/lab"
)

// guardLua drops telnet in forward and asks for the first packet of each
// web connection to be captured.
const guardLua = `
fw.register{name="block_telnet", hook="forward", fn=function(pkt)
  if pkt.dport == 23 then return fw.DROP end
  if pkt.dport == 80 and pkt.tcp.syn and not pkt.tcp.ack then pkt:capture() end
end}
`

// TestEventsAndCapture: a client's telnet connection dropped by a plugin
// shows in the decision events (with the documented fields) and in the
// pcapng capture (read by tcpdump and by luafw's reader), each naming the
// plugin and callback; a pkt:capture() packet is captured though accepted.
func TestEventsAndCapture(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 90*time.Second)
	files := map[string]string{
		"luafw.yaml": "plugins:\n  - {file: guard.lua}\n" +
			"events: {file: log/events.json, verdicts: [drop, reject]}\n" +
			"capture: {file: log/drops.pcapng}\n",
		"guard.lua": guardLua,
	}
	d := startDaemon(t, l.Router, files, "--metrics", "127.0.0.1:0")
	serveTCP(t, l.Server, 23, 80)
	if res := connect(ctx, l.Client, l.Server.Addr4, 23, time.Second); res.Outcome != lab.TimedOut {
		t.Fatalf("port 23: %v, want dropped", res)
	}
	if res := connect(ctx, l.Client, l.Server.Addr4, 80, 2*time.Second); res.Outcome != lab.Connected {
		t.Fatalf("port 80: %v, want connected", res)
	}
	// luafw status counts what the writers wrote.
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := status(t, ctx, l.Router)
		if o := st.Outputs; o != nil && o.Events.Written >= 1 && o.Capture.Written >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status outputs: %+v, want events and captures counted", st.Outputs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	body := scrape(t, d)
	if metricValue(body, `luafw_events_total{result="written"}`) < 1 || metricValue(body, `luafw_captured_packets_total{result="written"}`) < 2 ||
		metricValue(body, `luafw_events_total{result="lost"}`) != 0 {
		t.Errorf("metrics:\n%s", body)
	}
	d.stop() // the writers flush and close at shutdown

	// Events: every line parses with the documented names only.
	fh, err := os.Open(filepath.Join(d.dir, "log/events.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var drops int
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		dec.DisallowUnknownFields()
		var e observe.Record
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("event %s: %v", sc.Text(), err)
		}
		if e.Type != "decision" {
			continue
		}
		if _, err := time.Parse(time.RFC3339Nano, e.Time); err != nil {
			t.Errorf("event time %q: %v", e.Time, err)
		}
		if e.Verdict != "drop" || e.Hook != "forward" || e.Plugin == nil || *e.Plugin != "guard" || e.Callback == nil ||
			*e.Callback != "block_telnet" || e.Src != l.Client.Addr4.String() || e.Dst != l.Server.Addr4.String() ||
			e.Proto != "tcp" || e.DPort != 23 || e.SPort == 0 || e.CTState != "new" || e.Len < 40 || e.Segment == "" {
			t.Errorf("event %s", sc.Text())
		}
		drops++
	}
	if drops == 0 {
		t.Fatal("no drop event written")
	}

	// Capture: tcpdump reads it; luafw's reader sees the comments.
	path := filepath.Join(d.dir, "log/drops.pcapng")
	if tcpdump, err := exec.LookPath("tcpdump"); err == nil {
		out, err := exec.Command(tcpdump, "-nn", "-r", path).CombinedOutput()
		if err != nil || !strings.Contains(string(out), " > "+l.Server.Addr4.String()+".23: Flags [S]") {
			t.Errorf("tcpdump -r: %v\n%s", err, out)
		}
	} else {
		t.Log("tcpdump not installed (scripts/deps.sh installs it); checked with luafw's reader only")
	}
	var telnet, web int
	for _, p := range readCapture(t, path) {
		switch {
		case strings.HasPrefix(p.Comment, "plugin=guard callback=block_telnet hook=forward verdict=drop"):
			telnet++
		case strings.HasPrefix(p.Comment, "plugin=- callback=- hook=forward verdict=accept ") && strings.HasSuffix(p.Comment, " capture=guard"):
			web++
		default:
			t.Errorf("packet %d: comment %q", p.N, p.Comment)
		}
	}
	if telnet != drops || web != 1 {
		t.Fatalf("capture: %d telnet drops (events: %d), %d requested web SYNs (want 1)", telnet, drops, web)
	}
}

// banLua bans a source that tries telnet, and drops banned sources.
const banLua = `
local bans = state.map("bans")
fw.register{name="ban", hook="forward", fn=function(pkt)
  if bans:get(pkt.src) then return fw.DROP end
  if pkt.dport == 23 then
    bans:set(pkt.src, "telnet", 3600)
    return fw.DROP
  end
end}
`

// TestLiftBanAndPersistence: a ban shows in luafw state, survives a
// restart through the state file (with its expiry), and an operator lifts
// it with luafw state delete; the next connection passes. A corrupt state
// file is moved aside and does not stop the daemon.
func TestLiftBanAndPersistence(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 120*time.Second)
	files := map[string]string{
		"luafw.yaml": "plugins:\n  - {file: ban.lua}\nstate: {file: lib/state.json, save_every: 1h}\n",
		"ban.lua":    banLua,
	}
	d := startDaemon(t, l.Router, files)
	serveTCP(t, l.Server, 23, 80)
	client := l.Client.Addr4.String()
	if res := connect(ctx, l.Client, l.Server.Addr4, 80, 2*time.Second); res.Outcome != lab.Connected {
		t.Fatalf("before the ban: port 80 %v", res)
	}
	connect(ctx, l.Client, l.Server.Addr4, 23, 500*time.Millisecond)
	if res := connect(ctx, l.Client, l.Server.Addr4, 80, time.Second); res.Outcome != lab.TimedOut {
		t.Fatalf("banned: port 80 %v, want dropped", res)
	}
	code, out, errs := luafwIn(t, ctx, l.Router, "state", "show", "bans", "--json")
	var show struct {
		Entries []struct {
			Key     string    `json:"key"`
			Value   string    `json:"value"`
			Expires time.Time `json:"expires"`
		} `json:"entries"`
	}
	if err := json.Unmarshal([]byte(out), &show); code != 0 || err != nil || len(show.Entries) != 1 || show.Entries[0].Key != client {
		t.Fatalf("state show bans: exit %d %v\n%s%s", code, err, out, errs)
	}
	expires := show.Entries[0].Expires

	// Restart: the ban comes back from the state file, expiry and all.
	d.stop()
	if !strings.Contains(d.logs.String(), "state saved") {
		t.Fatalf("no save at shutdown:\n%s", d.logs.String())
	}
	d = startDaemonIn(t, l.Router, d.dir)
	d.waitLog("state restored", 5*time.Second)
	if res := connect(ctx, l.Client, l.Server.Addr4, 80, time.Second); res.Outcome != lab.TimedOut {
		t.Fatalf("after restart: port 80 %v, want still banned", res)
	}
	code, out, _ = luafwIn(t, ctx, l.Router, "state", "show", "bans", "--json")
	if err := json.Unmarshal([]byte(out), &show); code != 0 || err != nil || len(show.Entries) != 1 || !show.Entries[0].Expires.Equal(expires) {
		t.Fatalf("after restart: %s (want expiry %v kept)", out, expires)
	}

	// The operator lifts the ban.
	code, out, errs = luafwIn(t, ctx, l.Router, "state", "delete", "bans", client)
	if code != 0 || out != "deleted bans["+client+"]\n" {
		t.Fatalf("state delete: exit %d %q %q", code, out, errs)
	}
	if res := connect(ctx, l.Client, l.Server.Addr4, 80, 2*time.Second); res.Outcome != lab.Connected {
		t.Fatalf("after lifting the ban: port 80 %v, want connected", res)
	}

	// A corrupt file is reported, moved aside, and the daemon runs.
	d.stop()
	statePath := filepath.Join(d.dir, "lib/state.json")
	if err := os.WriteFile(statePath, []byte("{\"format\":\"luafw-state\",\"vers"), 0o600); err != nil {
		t.Fatal(err)
	}
	d = startDaemonIn(t, l.Router, d.dir)
	d.waitLog("the saved state file is unusable", 5*time.Second)
	if _, err := os.Stat(statePath + ".corrupt"); err != nil {
		t.Fatalf("corrupt file not moved aside: %v", err)
	}
	if res := connect(ctx, l.Client, l.Server.Addr4, 80, 2*time.Second); res.Outcome != lab.Connected {
		t.Fatalf("after a corrupt state file: port 80 %v, want connected", res)
	}
	d.stop()
}

// TestEventsUnderFlood: a flood of dropped packets writes at most the
// rate limit's worth of events, and every drop is accounted for: written,
// suppressed (reported in suppressed lines) or lost. The capture holds or
// counts every one too.
func TestEventsUnderFlood(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 90*time.Second)
	files := map[string]string{
		"luafw.yaml": "plugins:\n  - {file: drop.lua}\n" +
			"events: {file: ev.json, rate: 10/s, burst: 20}\ncapture: {file: c.pcapng, snaplen: 64}\n",
		"drop.lua": `fw.register{name="sink", hook="forward", fn=function(pkt) if pkt.dport == 7000 then return fw.DROP end end}`,
	}
	d := startDaemon(t, l.Router, files)
	sent, err := l.Client.UDPFlood(ctx, l.Server.Addr4.String()+":7000", 3000, 100, 3000)
	if err != nil {
		t.Fatal(err)
	}
	// Wait for the queue to drain: the drop count stands still.
	var drops uint64
	for prev := uint64(1 << 63); drops != prev; time.Sleep(300 * time.Millisecond) {
		prev, drops = drops, 0
		for _, s := range status(t, ctx, l.Router).Segments {
			drops += s.Verdicts["drop"]
		}
	}
	d.stop()
	if drops == 0 || drops > uint64(sent) {
		t.Fatalf("luafw dropped %d of %d sent", drops, sent)
	}
	var written, suppressed, lost uint64
	for _, rec := range readEvents(t, filepath.Join(d.dir, "ev.json")) {
		switch rec.Type {
		case "decision":
			written++
		case "suppressed":
			suppressed += rec.Suppressed
			lost += rec.Lost
		}
	}
	// About 1 s of flood: the burst and a second's rate, with slack for
	// the flood taking longer on a busy machine.
	if written < 20 || written > 20+10*10 {
		t.Errorf("%d events written, want the burst of 20 plus about 10/s", written)
	}
	if written+suppressed+lost != drops {
		t.Errorf("events: %d written + %d suppressed + %d lost != %d drops", written, suppressed, lost, drops)
	}
	var captured uint64
	for _, p := range readCapture(t, filepath.Join(d.dir, "c.pcapng")) {
		if p.CapLen != 64 || p.OrigLen != 128 {
			t.Fatalf("packet %d: %d of %d bytes captured, want 64 of 128 (snaplen)", p.N, p.CapLen, p.OrigLen)
		}
		captured++
	}
	capLost := captureLost(d.logs.String())
	if captured+capLost != drops {
		t.Errorf("capture: %d written + %d lost != %d drops", captured, capLost, drops)
	}
}

func readEvents(t *testing.T, path string) []observe.Record {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var out []observe.Record
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		var r observe.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

// captureLost reads captures_lost from the daemon's shutdown log line.
func captureLost(logs string) uint64 {
	m := regexp.MustCompile(`captures_lost=(\d+)`).FindStringSubmatch(logs)
	if m == nil {
		return 0
	}
	n, _ := strconv.ParseUint(m[1], 10, 64)
	return n
}

// TestEventsFileUnwritable: luafw refuses to start, naming the file, when
// it cannot open the events file, and leaves no rules behind.
func TestEventsFileUnwritable(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 60*time.Second)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"luafw.yaml": "plugins:\n  - {file: drop.lua}\nevents: {file: notadir/events.json}\n",
		"drop.lua":   drop23,
		"notadir":    "a file where a directory should be\n",
	})
	code, _, errs := luafwIn(t, ctx, l.Router, "run", "--config", filepath.Join(dir, "luafw.yaml"), "--pidfile", "")
	if code != 1 || !strings.Contains(errs, "events:") || !strings.Contains(errs, "notadir") {
		t.Fatalf("exit %d, want 1 naming the events file:\n%s", code, errs)
	}
	if left := ourRules(t, ctx, l.Router); left != "" {
		t.Errorf("rules left behind:\n%s", left)
	}
}

// readCapture reads every packet of a capture file with luafw's reader.
func readCapture(t *testing.T, path string) []pcap.Packet {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcap.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var pkts []pcap.Packet
	for {
		p, err := r.Next()
		if err == io.EOF {
			return pkts
		}
		if err != nil {
			t.Fatal(err)
		}
		pkts = append(pkts, p)
	}
}

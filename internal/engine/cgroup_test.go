package engine

import (
	"errors"
	"strings"
	"testing"
)

func TestCgroupMatchAndField(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e, src("cg", `
fw.register{name = "web-only", hook = "output", match = {cgroup = "/system.slice/nginx.service", dport = 443}, fn = function(pkt)
  pkt:tag("web")
end}
fw.register{name = "show", hook = {"output", "postrouting"}, fn = function(pkt)
  pkt:tag("cg=" .. tostring(pkt.cgroup))
end}`))
	run := func(cg string, known bool) []string {
		d := e.Process(&Packet{Hook: Output, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 40000, 443, 0x02), Cgroup: cg, CgroupKnown: known})
		return d.Tags
	}
	for _, tc := range []struct {
		cg    string
		known bool
		want  string
	}{
		{"system.slice/nginx.service", true, "web cg=system.slice/nginx.service"},
		{"system.slice/nginx.service/worker", true, "web cg=system.slice/nginx.service/worker"}, // below it
		{"system.slice/nginx.services", true, "cg=system.slice/nginx.services"},                 // a sibling
		{"user.slice", true, "cg=user.slice"},
		{"", false, "cg=nil"}, // not known (no source): no match
	} {
		if got := strings.Join(run(tc.cg, tc.known), " "); got != tc.want {
			t.Errorf("cgroup %q: tags %q, want %q", tc.cg, got, tc.want)
		}
	}
	chains := e.Chains()
	if chains[0].Name != "web-only" || chains[0].Match.String() != "dport=443 cgroup=system.slice/nginx.service" {
		t.Errorf("match shown as %q", chains[0].Match.String())
	}
}

// cgroupByPort is a CgroupSource that answers by destination port, and
// counts its lookups.
type cgroupByPort struct{ calls int }

func (s *cgroupByPort) Cgroup(c *Ctx) (string, bool) {
	s.calls++
	if c.Parsed().DstPort == 443 {
		return "system.slice/nginx.service", true
	}
	return "", false
}

func TestCgroupSourceAskedOncePerPacket(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e, src("cg", `
fw.register{hook = "output", match = {cgroup = "system.slice"}, fn = function(pkt) pkt:tag(pkt.cgroup) end}
fw.register{hook = "output", match = {cgroup = "system.slice/nginx.service"}, fn = function(pkt) pkt:tag("again " .. pkt.cgroup) end}
fw.register{hook = "output", match = {dport = 22}, fn = function(pkt) end}`))
	w := e.NewWorker()
	defer w.Close()
	src := &cgroupByPort{}
	w.SetCgroupSource(src)
	d := w.Run(&Packet{Hook: Output, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 40000, 443, 0x02)})
	if strings.Join(d.Tags, ",") != "system.slice/nginx.service,again system.slice/nginx.service" || src.calls != 1 {
		t.Fatalf("tags %v after %d lookups; want both callbacks and one lookup", d.Tags, src.calls)
	}
	w.Run(&Packet{Hook: Output, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 40000, 22, 0x02)})
	if src.calls != 2 {
		t.Fatalf("%d lookups after the second packet, want 2", src.calls)
	}
}

func TestCgroupMatchRefused(t *testing.T) {
	for _, tc := range []struct{ name, code, want string }{
		{"input", `fw.register{hook = "input", match = {cgroup = "a"}, fn = function() end}`, "cgroup works on the output and postrouting hooks"},
		{"dotdot", `fw.register{hook = "output", match = {cgroup = "a/../b"}, fn = function() end}`, "cgroup"},
		{"number", `fw.register{hook = "output", match = {cgroup = 5}, fn = function() end}`, "want a cgroup path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := newTestEngine(t)
			err := e.Load([]PluginSpec{src(tc.name, tc.code)})
			var le *LoadError
			if !errors.As(err, &le) || le.Line != 1 || !strings.Contains(le.Reason, tc.want) {
				t.Fatalf("err = %v, want a load error at line 1 saying %q", err, tc.want)
			}
		})
	}
}

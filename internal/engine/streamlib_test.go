package engine

import (
	"strings"
	"testing"
)

// TestStreamModuleMisuse: the stream module refuses what is not a packet
// callback's packet, and limits outside the top level, with a reason; the
// packet gets on_error, the daemon goes on.
func TestStreamModuleMisuse(t *testing.T) {
	for _, c := range []struct{ name, code, want string }{
		{"not the packet", `fw.register{hook="forward", fn=function(pkt) stream.tls_hello("x") end}`, "wants the packet"},
		{"a table", `fw.register{hook="forward", fn=function(pkt) stream.dns({}) end}`, "wants the packet"},
		{"limits in a callback", `fw.register{hook="forward", fn=function(pkt) stream.limits{bytes = 100} end}`, "only at the top level"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, logs := newTestEngine(t)
			mustLoad(t, e, src("p", c.code))
			w := e.NewWorker()
			defer w.Close()
			if d := w.Run(&Packet{Hook: Forward, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1000, 443, 0x18)}); d.Errors != 1 {
				t.Fatalf("errors %d", d.Errors)
			}
			if !strings.Contains(logs.String(), c.want) {
				t.Fatalf("log does not say %q:\n%s", c.want, logs.String())
			}
		})
	}
	for _, c := range []struct{ name, code, want string }{
		{"at the top level", `stream.tls_hello(nil)`, "wants the packet"},
		{"unknown limit", `stream.limits{byte = 10}`, "unknown limit byte"},
		{"limit out of range", `stream.limits{bytes = 10}`, "bytes must be an integer 64..1048576"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, _ := newTestEngine(t)
			err := e.Load([]PluginSpec{src("p", c.code)})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("load error %v, want %q", err, c.want)
			}
		})
	}
}

// TestStreamPerState: two plugins read the same flow each in its own
// table; a plugin that never asks holds none.
func TestStreamPerState(t *testing.T) {
	e, logs := newTestEngine(t)
	mustLoad(t, e,
		src("a", `fw.register{hook="forward", fn=function(pkt) stream.tls_hello(pkt); print("a", stream.stats().flows) end}`),
		src("b", `fw.register{hook="forward", fn=function(pkt) print("b", stream.stats().flows) end}`))
	w := e.NewWorker()
	defer w.Close()
	w.Run(&Packet{Hook: Forward, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1000, 443, 0x18)})
	out := logs.String()
	if !strings.Contains(out, `msg="a\t1"`) || !strings.Contains(out, `msg="b\t0"`) {
		t.Fatalf("logs:\n%s", out)
	}
}

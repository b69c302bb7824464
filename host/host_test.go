package host_test

import (
	"errors"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/luafw/luafw/host"
	"github.com/luafw/luafw/lua"
)

func newEngine(t *testing.T, opts host.Options) *host.Engine {
	t.Helper()
	e := host.New(opts)
	t.Cleanup(e.Close)
	return e
}

func load(t *testing.T, e *host.Engine, name, src string) {
	t.Helper()
	if err := e.Load([]host.PluginSpec{{Name: name, File: name + ".lua", Source: []byte(src), Budget: time.Second}}); err != nil {
		t.Fatal(err)
	}
}

// New changes nothing outside the engine: not the interpreter's package
// variables, not the Go runtime's settings, even with a memory ceiling.
func TestNewHasNoProcessWideEffects(t *testing.T) {
	maxArray := lua.MaxArrayIndex
	procs := runtime.GOMAXPROCS(0)
	memLimit := debug.SetMemoryLimit(-1)
	e := newEngine(t, host.Options{MemoryLimit: 256 << 20})
	load(t, e, "lists", `local t = {} for i = 1, 70000 do t[i] = i end
fw.register{hook = "input", fn = function() end}`)
	e.Process(&host.Packet{Hook: host.Input, Data: tcp("10.0.0.1", "10.0.0.2", 80)})
	if lua.MaxArrayIndex != maxArray {
		t.Errorf("lua.MaxArrayIndex changed from %d to %d", maxArray, lua.MaxArrayIndex)
	}
	if n := runtime.GOMAXPROCS(0); n != procs {
		t.Errorf("GOMAXPROCS changed from %d to %d", procs, n)
	}
	if l := debug.SetMemoryLimit(-1); l != memLimit {
		t.Errorf("the GC memory limit changed from %d to %d", memLimit, l)
	}
	// An embedder's own gopher-lua state keeps the interpreter's defaults.
	L := lua.NewState()
	defer L.Close()
	if err := L.DoString(`local t = {} for i = 1, 70000 do t[i] = i end assert(#t == 70000)`); err != nil {
		t.Errorf("a plain state: %v", err)
	}
}

// A plugin that fails to load is refused with its file and line, and the
// running set stays.
func TestLoadErrorKeepsRunningSet(t *testing.T) {
	e := newEngine(t, host.Options{})
	load(t, e, "drop23", `fw.register{hook = "input", fn = function(pkt) if pkt.dport == 23 then return fw.DROP end end}`)
	err := e.Load([]host.PluginSpec{{Name: "bad", File: "bad.lua", Source: []byte("local x = 1\nfw.register{hook = \"nowhere\", fn = function() end}")}})
	var le *host.LoadError
	if !errors.As(err, &le) || le.File != "bad.lua" || le.Line != 2 {
		t.Fatalf("err = %v, want a LoadError at bad.lua:2", err)
	}
	if d := e.Process(&host.Packet{Hook: host.Input, Data: tcp("10.0.0.1", "10.0.0.2", 23)}); d.Verdict != host.Drop {
		t.Fatalf("after a failed load: verdict %v, want drop (the old set)", d.Verdict)
	}
}

// A callback over its budget costs its packet the plugin's on_error
// verdict; the next packet is decided normally.
func TestBudgetOverrunGetsOnError(t *testing.T) {
	e := newEngine(t, host.Options{})
	err := e.Load([]host.PluginSpec{{Name: "loop", Budget: 5 * time.Millisecond, OnError: host.Drop, Source: []byte(`
fw.register{hook = "input", fn = function(pkt) if pkt.dport == 9 then while true do end end end}`)}})
	if err != nil {
		t.Fatal(err)
	}
	w := e.NewWorker()
	defer w.Close()
	if d := w.Run(&host.Packet{Hook: host.Input, Data: tcp("10.0.0.1", "10.0.0.2", 9)}); d.Verdict != host.Drop || d.Errors != 1 {
		t.Fatalf("endless callback: verdict %v errors %d, want drop with one error", d.Verdict, d.Errors)
	}
	if d := w.Run(&host.Packet{Hook: host.Input, Data: tcp("10.0.0.1", "10.0.0.2", 80)}); d.Verdict != host.Accept || d.Errors != 0 {
		t.Fatalf("next packet: verdict %v errors %d", d.Verdict, d.Errors)
	}
}

// Go callbacks run before Lua ones at equal priority, and Chains lists the
// order the packet sees.
func TestRegisterOrder(t *testing.T) {
	e := newEngine(t, host.Options{})
	load(t, e, "lua", `fw.register{hook = "forward", name = "l", fn = function(pkt) pkt:tag("lua") end}`)
	if err := e.Register(host.Forward, host.PriorityFilter, "g", func(c *host.Ctx) host.Verdict {
		c.Tag("go")
		return host.Accept
	}); err != nil {
		t.Fatal(err)
	}
	d := e.Process(&host.Packet{Hook: host.Forward, Data: tcp("10.0.0.1", "10.0.0.2", 80)})
	if got := strings.Join(d.Tags, ","); got != "go,lua" {
		t.Fatalf("tags %q, want go,lua", got)
	}
	var names []string
	for _, c := range e.Chains() {
		names = append(names, c.Plugin+"/"+c.Name)
	}
	if got := strings.Join(names, ","); got != "go/g,lua/l" {
		t.Fatalf("chains %q", got)
	}
}

// Workers on several goroutines and reloads at the same time: every packet
// gets the verdict of one of the sets, never anything else.
func TestConcurrentWorkersAndReloads(t *testing.T) {
	e := newEngine(t, host.Options{})
	src := func(v string) string {
		return `fw.register{hook = "input", fn = function(pkt) return fw.` + v + ` end}`
	}
	load(t, e, "p", src("DROP"))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := e.NewWorker()
			defer w.Close()
			p := &host.Packet{Hook: host.Input, Data: tcp("10.0.0.1", "10.0.0.2", 80)}
			for {
				select {
				case <-stop:
					return
				default:
				}
				if d := w.Run(p); d.Errors != 0 || (d.Verdict != host.Drop && d.Verdict != host.Accept) {
					errs <- errors.New("verdict " + d.Verdict.String())
					return
				}
			}
		}()
	}
	for i := 0; i < 20; i++ {
		v := "DROP"
		if i%2 == 1 {
			v = "ACCEPT"
		}
		load(t, e, "p", src(v))
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if e.Generation() < 21 {
		t.Fatalf("generation %d after 21 loads", e.Generation())
	}
}

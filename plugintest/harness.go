package plugintest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	lua "github.com/luafw/luafw/lua"

	"github.com/luafw/luafw/config"
	"github.com/luafw/luafw/host/packet"
	"github.com/luafw/luafw/internal/engine"
	"github.com/luafw/luafw/pcap"
	"github.com/luafw/luafw/replay"
)

// harness is what harness() and harness_config() return: one engine with
// plugins loaded, a worker to run packets, and a flow table for h:send.
type harness struct {
	fr    *fileRun
	specs []engine.PluginSpec
	eng   *engine.Engine
	w     *engine.Worker
	flows *pcap.Flows

	mu   sync.Mutex
	logs []slog.Record // not yet returned by h:logs()
}

// newHarness starts an engine with the plugins loaded. The error is a
// *engine.LoadError for script problems.
func (fr *fileRun) newHarness(specs []engine.PluginSpec) (*harness, error) {
	for i := range specs {
		if specs[i].Budget <= 0 {
			specs[i].Budget = fr.opts.budget()
		}
	}
	h := &harness{fr: fr, specs: specs}
	if err := h.start(); err != nil {
		return nil, err
	}
	fr.harnesses = append(fr.harnesses, h)
	return h, nil
}

// start makes a fresh engine, worker and flow table.
func (h *harness) start() error {
	eng := engine.New(engine.Options{
		Logger:       slog.New(&logHandler{h: h}),
		Clock:        h.fr.clock.Now,
		MemoryLimit:  h.fr.opts.memoryLimit(),
		ManualTimers: true, // run by clock.advance

	})
	ctx := context.Background()
	if h.fr.L != nil && h.fr.L.Context() != nil {
		ctx = h.fr.L.Context() // the file's: its timeout and signals
	}
	if err := eng.LoadContext(ctx, h.specs); err != nil {
		eng.Close()
		return err
	}
	h.eng, h.w, h.flows = eng, eng.NewWorker(), pcap.NewFlows()
	return nil
}

// close stops the harness' engine.
func (h *harness) close() {
	if h.eng != nil {
		h.w.Close()
		h.eng.Close()
		h.eng, h.w = nil, nil
	}
}

// pluginSpec reads the arguments of harness(path [, options [, spec]]).
func (fr *fileRun) pluginSpec(L *lua.LState) engine.PluginSpec {
	file := fr.inRoot(L, 1, L.CheckString(1))
	spec := engine.PluginSpec{File: file}
	if t, ok := L.Get(2).(*lua.LTable); ok {
		opts, err := luaToGo(t)
		if err != nil {
			L.ArgError(2, err.Error())
		}
		if m, ok := opts.(map[string]any); ok {
			spec.Options = m
		} else {
			L.ArgError(2, "options must be a table of named values, not a list")
		}
	} else if L.Get(2) != lua.LNil {
		L.ArgError(2, fmt.Sprintf("options must be a table, not %s", L.Get(2).Type()))
	}
	if t, ok := L.Get(3).(*lua.LTable); ok {
		f := engine.TableFields(t)
		for _, k := range sortedKeys(f) {
			v := f[k]
			num := func() float64 {
				n, ok := v.(lua.LNumber)
				if !ok || n < 0 {
					L.ArgError(3, fmt.Sprintf("%s must be a number >= 0, not %s", k, v.String()))
				}
				return float64(n)
			}
			switch k {
			case "name":
				spec.Name = lua.LVAsString(v)
			case "on_error":
				vd, err := engine.ParseVerdict(lua.LVAsString(v))
				if err != nil {
					L.ArgError(3, "on_error: "+err.Error())
				}
				spec.OnError = vd
			case "budget":
				spec.Budget = seconds(num())
			case "quarantine_after":
				spec.QuarantineAfter = int(num())
			case "quarantine_for":
				spec.QuarantineFor = seconds(num())
			case "allow_dirs":
				spec.AllowDirs = fr.dirList(L, v)
			default:
				L.ArgError(3, fmt.Sprintf("unknown field %q (want name, on_error, budget, quarantine_after, quarantine_for, allow_dirs)", k))
			}
		}
	} else if L.Get(3) != lua.LNil {
		L.ArgError(3, fmt.Sprintf("want a table such as {on_error = \"drop\"}, not %s", L.Get(3).Type()))
	}
	return spec
}

func seconds(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

// dirList reads spec.allow_dirs: a list of directories, relative to the
// test file, each inside the test's tree.
func (fr *fileRun) dirList(L *lua.LState, v lua.LValue) []string {
	t, ok := v.(*lua.LTable)
	if !ok {
		L.ArgError(3, "allow_dirs must be a list of directories")
	}
	var dirs []string
	for i := 1; i <= t.Len(); i++ {
		s, ok := t.RawGetInt(i).(lua.LString)
		if !ok {
			L.ArgError(3, "allow_dirs must be a list of directories")
		}
		dirs = append(dirs, fr.inRoot(L, 3, string(s)))
	}
	return dirs
}

// resolveRoot returns the directory tree the test file's paths must lie
// in, resolved: Options.Root, or the test file's directory.
func (fr *fileRun) resolveRoot() (string, error) {
	root := fr.opts.Root
	if root == "" {
		root = filepath.Dir(fr.path)
	}
	r, err := engine.RealPath(root)
	if err != nil {
		return "", fmt.Errorf("%s: the test's directory: %v", fr.path, err)
	}
	return r, nil
}

// rootError is the one error of a path outside the test's tree (or
// missing): it does not say which, so that a test cannot probe the files
// around it.
func (fr *fileRun) rootError(given string) string {
	return fmt.Sprintf("%q is not inside the test's directory tree %s (absolute paths, \"..\" and symlinks may not lead out of it)", given, fr.root)
}

// inRoot resolves path, named by the test file (relative to the test
// file), and raises an argument error at argument n unless it lies inside
// the test's directory tree after ".." and symlinks are resolved (the
// engine's own resolution). It returns the path joined to the test file's
// directory (the engine resolves it again).
func (fr *fileRun) inRoot(L *lua.LState, n int, path string) string {
	full := path
	if !filepath.IsAbs(full) {
		full = filepath.Join(filepath.Dir(fr.path), full)
	}
	if !fr.insideRoot(full) {
		L.ArgError(n, fr.rootError(path))
	}
	return full
}

// insideRoot reports whether full resolves inside the test's tree. A path
// that does not exist counts when its directory does and is inside: the
// engine then says the file is missing.
func (fr *fileRun) insideRoot(full string) bool {
	if fr.root == "" {
		return false
	}
	real, err := engine.RealPath(full)
	if err != nil {
		base := filepath.Base(full)
		if !errors.Is(err, fs.ErrNotExist) || base == ".." || base == "." {
			return false
		}
		if real, err = engine.RealPath(filepath.Dir(full)); err != nil {
			return false
		}
	}
	return engine.Within(real, []string{fr.root})
}

// checkSpecsInRoot raises an error unless every plugin file and allowed
// directory of a configuration's specs lies inside the test's tree.
func (fr *fileRun) checkSpecsInRoot(L *lua.LState, cfgPath string, specs []engine.PluginSpec) {
	check := func(what, p string) {
		if !fr.insideRoot(p) {
			L.RaiseError("harness_config: %s: %s %s", cfgPath, what, fr.rootError(p))
		}
	}
	for _, s := range specs {
		check("plugin file", s.File)
		for _, d := range s.AllowDirs {
			check("allow_dirs entry", d)
		}
	}
}

// luaHarness is harness(path [, options [, spec]]).
func (fr *fileRun) luaHarness(L *lua.LState) int {
	spec := fr.pluginSpec(L)
	h, err := fr.newHarness([]engine.PluginSpec{spec})
	if err != nil {
		L.RaiseError("harness: %v", err)
	}
	L.Push(fr.wrapHarness(L, h))
	return 1
}

// luaHarnessConfig is harness_config(path).
func (fr *fileRun) luaHarnessConfig(L *lua.LState) int {
	path := L.CheckString(1)
	cfg, err := config.Load(fr.inRoot(L, 1, path))
	if err != nil {
		L.RaiseError("harness_config: %v", err)
	}
	specs, err := cfg.PluginSpecs()
	if err != nil {
		L.RaiseError("harness_config: %v", err)
	}
	fr.checkSpecsInRoot(L, path, specs)
	h, err := fr.newHarness(specs)
	if err != nil {
		L.RaiseError("harness_config: %v", err)
	}
	L.Push(fr.wrapHarness(L, h))
	return 1
}

func (fr *fileRun) wrapHarness(L *lua.LState, h *harness) *lua.LUserData {
	ud := L.NewUserData()
	ud.Value = h
	ud.Metatable = L.GetTypeMetatable("plugintest.harness")
	return ud
}

// harnessMetatable sets up the methods of harness objects.
func (fr *fileRun) harnessMetatable(L *lua.LState) {
	mt := L.NewTypeMetatable("plugintest.harness")
	check := func(L *lua.LState) *harness {
		ud, ok := L.Get(1).(*lua.LUserData)
		if ok {
			if h, ok := ud.Value.(*harness); ok {
				if h.eng == nil {
					L.RaiseError("harness is closed (its last reset failed)")
				}
				return h
			}
		}
		L.RaiseError("want a harness as the receiver: call h:run(...), not h.run(...)")
		return nil
	}
	methods := map[string]lua.LGFunction{
		"run": func(L *lua.LState) int {
			h := check(L)
			p := argPacket(L, 2)
			var hook engine.Hook
			switch v := L.Get(3).(type) {
			case lua.LString:
				hk, err := engine.ParseHook(string(v))
				if err != nil {
					L.ArgError(3, err.Error())
				}
				hook = hk
			case *lua.LNilType:
				if !p.ctx.hasHook {
					L.ArgError(3, "no hook: give one, as in h:run(p, \"input\"), or set hook= in the packet")
				}
				hook = p.ctx.hook
			default:
				L.ArgError(3, fmt.Sprintf("hook must be a string, not %s", v.Type()))
			}
			L.Push(h.run(L, p, hook))
			return 1
		},
		"send": func(L *lua.LState) int {
			h := check(L)
			p := argPacket(L, 2)
			name := L.OptString(3, "forward")
			path, err := replay.ParsePath(name)
			if err != nil {
				L.ArgError(3, err.Error())
			}
			L.Push(h.send(L, p, name, path))
			return 1
		},
		"reset": func(L *lua.LState) int {
			h := check(L)
			h.close()
			h.mu.Lock()
			h.logs = nil
			h.mu.Unlock()
			if err := h.start(); err != nil {
				L.RaiseError("reset: %v", err)
			}
			return 0
		},
		"chains": func(L *lua.LState) int {
			h := check(L)
			out := L.NewTable()
			for _, c := range h.eng.Chains() {
				t := L.NewTable()
				t.RawSetString("hook", lua.LString(c.Hook.String()))
				t.RawSetString("priority", lua.LNumber(c.Priority))
				t.RawSetString("plugin", lua.LString(c.Plugin))
				t.RawSetString("name", lua.LString(c.Name))
				out.Append(t)
			}
			L.Push(out)
			return 1
		},
		"logs": func(L *lua.LState) int {
			h := check(L)
			h.mu.Lock()
			recs := h.logs
			h.logs = nil
			h.mu.Unlock()
			out := L.NewTable()
			for _, r := range recs {
				t := L.NewTable()
				r.Attrs(func(a slog.Attr) bool {
					t.RawSetString(a.Key, attrValue(a.Value))
					return true
				})
				t.RawSetString("level", lua.LString(strings.ToLower(r.Level.String())))
				t.RawSetString("msg", lua.LString(r.Message))
				out.Append(t)
			}
			L.Push(out)
			return 1
		},
		"timers": func(L *lua.LState) int {
			h := check(L)
			out := L.NewTable()
			for _, ti := range h.eng.Timers() {
				t := L.NewTable()
				t.RawSetString("plugin", lua.LString(ti.Plugin))
				t.RawSetString("where", lua.LString(ti.Where))
				t.RawSetString("every", lua.LNumber(ti.Every.Seconds()))
				t.RawSetString("next", lua.LNumber(float64(ti.Next.UnixNano())/1e9))
				t.RawSetString("runs", lua.LNumber(ti.Runs))
				t.RawSetString("failures", lua.LNumber(ti.Failures))
				t.RawSetString("skipped", lua.LNumber(ti.Skipped))
				if ti.LastError != "" {
					t.RawSetString("last_error", lua.LString(ti.LastError))
				}
				out.Append(t)
			}
			L.Push(out)
			return 1
		},
	}
	mt.RawSetString("__index", L.SetFuncs(L.NewTable(), methods))
	mt.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
		h := check(L)
		names := make([]string, len(h.specs))
		for i, s := range h.specs {
			names[i] = s.File
		}
		L.Push(lua.LString("harness(" + strings.Join(names, ", ") + ")"))
		return 1
	}))
}

func attrValue(v slog.Value) lua.LValue {
	switch v.Kind() {
	case slog.KindInt64:
		return lua.LNumber(v.Int64())
	case slog.KindUint64:
		return lua.LNumber(v.Uint64())
	case slog.KindFloat64:
		return lua.LNumber(v.Float64())
	case slog.KindBool:
		return lua.LBool(v.Bool())
	}
	return lua.LString(v.String())
}

// argPacket reads a packet argument: a packet object or raw bytes.
func argPacket(L *lua.LState, n int) *testPacket {
	if s, ok := L.Get(n).(lua.LString); ok {
		return &testPacket{kind: "raw", fields: map[string]lua.LValue{"data": s}, data: []byte(s)}
	}
	return checkPacket(L, n)
}

// run runs the packet through one hook's chain.
func (h *harness) run(L *lua.LState, p *testPacket, hook engine.Hook) *lua.LTable {
	d := h.w.Run(p.hostPacket(hook))
	t := decisionTable(L, d)
	ctMark := uint32(0)
	if p.ctx.ctKnown {
		ctMark = p.ctx.ctMark
	}
	if d.CT.SetMark {
		ctMark = ctMark&^d.CT.MarkMask | d.CT.Mark&d.CT.MarkMask
	}
	t.RawSetString("ct_mark", lua.LNumber(ctMark))
	if p.ctx.ctState != engine.CTUnknown {
		t.RawSetString("ct_state", lua.LString(p.ctx.ctState.String()))
	}
	if d.CT.SetTimeout {
		t.RawSetString("ct_timeout", lua.LNumber(d.CT.Timeout))
	}
	t.RawSetString("ct_labels", labelList(L, d.CT.Labels))
	return t
}

// decisionTable is the part of a decision table both run and send fill.
func decisionTable(L *lua.LState, d engine.Decision) *lua.LTable {
	t := L.NewTable()
	t.RawSetString("verdict", lua.LString(d.Verdict.String()))
	t.RawSetString("hook", lua.LString(d.Hook.String()))
	if d.By != "" {
		t.RawSetString("by", lua.LString(d.By))
		t.RawSetString("callback", lua.LString(d.ByName))
	}
	t.RawSetString("mark", lua.LNumber(d.Mark))
	t.RawSetString("tags", stringList(L, d.Tags))
	t.RawSetString("errors", lua.LNumber(d.Errors))
	if d.CaptureBy != "" {
		t.RawSetString("capture_by", lua.LString(d.CaptureBy))
	}
	addRewrites(L, t, d) // rewrites.go
	return t
}

func stringList(L *lua.LState, list []string) *lua.LTable {
	t := L.CreateTable(len(list), 0)
	for _, s := range list {
		t.Append(lua.LString(s))
	}
	return t
}

func labelList(L *lua.LState, labels [2]uint64) *lua.LTable {
	t := L.NewTable()
	for bit := range 128 {
		if labels[bit/64]&(1<<(bit%64)) != 0 {
			t.Append(lua.LNumber(bit))
		}
	}
	return t
}

// send runs the packet along a path (its hooks in kernel order) with the
// harness' flow table, the way luafw replay does: the walk ends at a drop
// or reject; stop and repeat accept the packet at their hook and it goes
// on. Interfaces are given at the hooks where the kernel knows them, the
// owner only on the out path.
func (h *harness) send(L *lua.LState, p *testPacket, name string, path []engine.Hook) *lua.LTable {
	var pp packet.Parsed
	pp.Decode(p.data)
	flow, state := replay.Track(h.flows, &pp, p.data)
	ctState, _ := engine.ParseCTState(state)
	mark, tags := p.ctx.mark, slices.Clone(p.ctx.tags)
	var last engine.Decision
	verdict, by, callback, errors, captureBy := engine.Accept, "", "", 0, ""
	data, rewritten, injected := p.data, false, []engine.Injected(nil)
	hooks := L.NewTable()
	for _, hook := range path {
		hp := p.hostPacket(hook)
		hp.Mark, hp.Tags, hp.CTState, hp.Data = mark, tags, ctState, data
		hp.CTMark, hp.CTMarkKnown = 0, false
		if flow != nil {
			hp.CTMark, hp.CTMarkKnown = flow.Mark, true
		}
		if hook != engine.Prerouting && hook != engine.Input && hook != engine.Forward {
			hp.InDev = ""
		}
		if hook != engine.Forward && hook != engine.Output && hook != engine.Postrouting {
			hp.OutDev = ""
		}
		if name != "out" {
			hp.UID, hp.GID, hp.HasUID = 0, 0, false
		}
		d := h.w.Run(hp)
		if d.Data != nil {
			data, rewritten = slices.Clone(d.Data), true
		}
		injected = append(injected, d.Injected...)
		hooks.Append(lua.LString(hook.String()))
		last = d
		errors += d.Errors
		if captureBy == "" {
			captureBy = d.CaptureBy
		}
		mark = d.Mark
		tags = slices.Clone(d.Tags)
		if flow != nil && d.CT.Any() {
			replay.ApplyCT(flow, d.CT)
		}
		if d.Verdict != engine.Accept {
			by, callback = d.By, d.ByName
		}
		if d.Verdict == engine.Drop || d.Verdict == engine.Reject {
			verdict = d.Verdict
			break
		}
	}
	last.Verdict, last.By, last.ByName, last.Mark, last.Tags, last.Errors = verdict, by, callback, mark, tags, errors
	last.CaptureBy = captureBy
	last.Data, last.Injected = nil, injected
	if rewritten {
		last.Data = data
	}
	t := decisionTable(L, last)
	t.RawSetString("hooks", hooks)
	t.RawSetString("path", lua.LString(name))
	if state != "" {
		t.RawSetString("ct_state", lua.LString(state))
	}
	var labels [2]uint64
	ctMark := uint32(0)
	if flow != nil {
		ctMark, labels = flow.Mark, flow.Labels
		if flow.Timeout > 0 {
			t.RawSetString("ct_timeout", lua.LNumber(flow.Timeout.Seconds()))
		}
	}
	t.RawSetString("ct_mark", lua.LNumber(ctMark))
	t.RawSetString("ct_labels", labelList(L, labels))
	return t
}

// logHandler sends an engine's log lines to the running test's output and
// keeps those about a plugin (the scripts' own lines, callback failures,
// quarantine) for h:logs().
// maxLogs bounds the log records a harness keeps for h:logs() between two
// calls.
const maxLogs = 10000

type logHandler struct {
	h     *harness
	attrs []slog.Attr
}

func (l *logHandler) Enabled(context.Context, slog.Level) bool { return true }

func (l *logHandler) Handle(_ context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(l.attrs...)
	var b strings.Builder
	fmt.Fprintf(&b, "log: %s %s", r.Level, r.Message)
	r.Attrs(func(a slog.Attr) bool {
		v := a.Value.String()
		if strings.ContainsAny(v, " \t\"=") || v == "" {
			v = fmt.Sprintf("%q", v)
		}
		fmt.Fprintf(&b, " %s=%s", a.Key, v)
		return true
	})
	l.h.fr.output(b.String())
	aboutPlugin := false
	r.Attrs(func(a slog.Attr) bool {
		aboutPlugin = a.Key == "plugin"
		return !aboutPlugin
	})
	if aboutPlugin {
		l.h.mu.Lock()
		if len(l.h.logs) < maxLogs {
			l.h.logs = append(l.h.logs, r)
		}
		l.h.mu.Unlock()
	}
	return nil
}

func (l *logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &logHandler{h: l.h, attrs: append(slices.Clone(l.attrs), attrs...)}
}

func (l *logHandler) WithGroup(string) slog.Handler { return l }

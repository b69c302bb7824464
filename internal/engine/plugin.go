package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/luafw/luafw/internal/sandbox"
	"github.com/luafw/luafw/internal/tokenbucket"
	lua "github.com/luafw/luafw/lua"
	"github.com/luafw/luafw/lua/ast"
	"github.com/luafw/luafw/lua/parse"

	"github.com/luafw/luafw/host/netset"
)

// Defaults for a plugin's failure handling.
const (
	DefaultBudget          = 2 * time.Millisecond
	DefaultQuarantineAfter = 100
	DefaultQuarantineFor   = 60 * time.Second
	loadBudget             = 2 * time.Second
)

// PluginSpec says where a plugin comes from and how it runs.
type PluginSpec struct {
	// Name identifies the plugin in logs, metrics and decisions; default:
	// the file's base name without ".lua".
	Name string
	// File is the Lua file. Relative paths given to net.load are resolved
	// against its directory, and its directory is one the script may read
	// files from (unless Source is set).
	File string
	// AllowDirs are further directories the script may read files from
	// (net.load); see host/files.go for the rules.
	AllowDirs []string
	// Source, when set, is used instead of reading File (File still names
	// the chunk in error messages).
	Source []byte
	// Options is what the script sees as fw.options.
	Options map[string]any
	// Config is the configuration file the spec came from, and
	// OptionLines the line of each option's key in it: a bad option (see
	// fw.schema) is a load error at that place. Empty for specs made in
	// code.
	Config      string
	OptionLines map[string]int
	// OnError is the verdict a packet gets when a callback of this plugin
	// fails or runs out of budget: Accept (pass on, the default) or Drop or
	// Reject.
	OnError Verdict
	// Budget is the time one callback may run; default DefaultBudget.
	Budget time.Duration
	// QuarantineAfter consecutive failures quarantine the plugin for
	// QuarantineFor: its callbacks are skipped and packets get OnError.
	QuarantineAfter int
	QuarantineFor   time.Duration
	// Memory is the estimated bytes one of the plugin's Lua states (there
	// is one per worker) may keep across calls; default
	// DefaultPluginMemory. A state over it gets the plugin quarantined and
	// its states rebuilt.
	Memory int64
}

// LoadError is a plugin that failed to load, with the place and the reason.
type LoadError struct {
	Plugin string
	File   string
	Line   int // 0 when unknown
	Reason string
}

func (e *LoadError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Reason)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Reason)
}

// registration is one fw.register call, as the plugin's first (probe) run
// made it. Every worker's run of the same chunk must make the same ones.
type registration struct {
	name     string
	hooks    []Hook
	priority int
	matcher  *matcher // nil: every packet
}

// plugin is a compiled plugin of one loaded set, shared by all workers.
type plugin struct {
	spec  PluginSpec
	index int // position in the load order
	proto *lua.FunctionProto
	regs  []registration

	consecFails atomic.Int64
	quarantined atomic.Int64 // until, in engine clock nanoseconds; 0 = not
	// epoch counts resets: a worker's state made at an older epoch is
	// rebuilt before its next packet.
	epoch    atomic.Uint64
	counters *pluginCounters

	filesMu   sync.Mutex
	files     map[string]*netset.Set // net.load cache by resolved path, shared by workers
	allowDirs []string               // where net.load may read, resolved at load

	logLimiter tokenLimiter

	state stateNames // the state objects it opened at load (limits.go)

	schema []OptionSpec // the options it declares (fw.schema), nil when it does not

	// tagsSet, tagsTested: the tag names its code passes as literals to
	// pkt:tag and pkt:tagged; tagsComputed: it also calls pkt:tag with a
	// computed name (crosstags.go).
	tagsSet, tagsTested []string
	tagsComputed        bool

	// timersAtLoad: its top level set timers (fw.every, fw.after), so the
	// timer worker keeps a state of it (timers.go).
	timersAtLoad atomic.Bool

	// prepareCtx is the caller's context while Prepare probes the plugin
	// (nil otherwise): it ends the top-level run (topLevelContext).
	prepareCtx context.Context
}

func (p *plugin) name() string { return p.spec.Name }

// normalize fills the defaults of a spec.
func (s PluginSpec) normalize() PluginSpec {
	if s.Name == "" {
		s.Name = strings.TrimSuffix(filepath.Base(s.File), ".lua")
	}
	if s.Budget <= 0 {
		s.Budget = DefaultBudget
	}
	if s.QuarantineAfter <= 0 {
		s.QuarantineAfter = DefaultQuarantineAfter
	}
	if s.QuarantineFor <= 0 {
		s.QuarantineFor = DefaultQuarantineFor
	}
	if s.Memory <= 0 {
		s.Memory = DefaultPluginMemory
	}
	return s
}

// compile reads and compiles a plugin's chunk (at most MaxPluginFileSize
// bytes), parsing and compiling it inside the load budget and the heap
// watch, and stopping when parent ends. Syntax errors come back as a
// *LoadError with the line.
func (e *Engine) compile(parent context.Context, spec PluginSpec) (*lua.FunctionProto, error) {
	src, err := spec.source()
	if err != nil {
		return nil, err
	}
	ctx, cancel := e.wd.LoadContextIn(parent, loadBudget)
	defer cancel()
	check := loadCheck(ctx, parent, "parse and compile")
	chunk, err := parse.ParseInterruptible(bytes.NewReader(src), spec.File, check)
	if err == nil {
		err = check()
	}
	if err != nil {
		if isLoadCut(err) {
			return nil, &LoadError{Plugin: spec.Name, File: spec.File, Reason: err.Error()}
		}
		return nil, syntaxError(spec, src, err)
	}
	if err := e.checkChunk(spec, chunk); err != nil {
		return nil, err
	}
	proto, err := lua.CompileInterruptible(chunk, spec.File, check)
	if err != nil {
		if isLoadCut(err) {
			return nil, &LoadError{Plugin: spec.Name, File: spec.File, Reason: err.Error()}
		}
		return nil, syntaxError(spec, src, err)
	}
	boxedKeys(proto)
	return proto, nil
}

// checkChunk runs the static checks: the first error (or, with
// StrictChecks, the first warning) fails the load; warnings go to
// Options.Warn.
func (e *Engine) checkChunk(spec PluginSpec, chunk []ast.Stmt) error {
	var first *Finding
	n := 0
	for _, f := range lint(spec.File, chunk) {
		if f.Error || e.opts.StrictChecks {
			if first == nil {
				first = &f
			}
			n++
			continue
		}
		if e.opts.Warn != nil {
			e.opts.Warn(f)
		} else {
			e.log.Warn("plugin check: "+f.Msg, "plugin", spec.Name, "at", fmt.Sprintf("%s:%d", f.File, f.Line))
		}
	}
	if first == nil {
		return nil
	}
	reason := first.Msg
	if !first.Error {
		reason += " (a warning; strict checks make it an error)"
	}
	if n > 1 {
		reason += fmt.Sprintf(" (and %d more)", n-1)
	}
	return &LoadError{Plugin: spec.Name, File: spec.File, Line: first.Line, Reason: reason}
}

// source is the spec's Source, or its File read, at most
// MaxPluginFileSize bytes; an error is a *LoadError.
func (s PluginSpec) source() ([]byte, error) {
	if s.Source == nil {
		b, err := ReadLimited(s.File, MaxPluginFileSize, "plugin file")
		if err != nil {
			return nil, &LoadError{Plugin: s.Name, File: s.File, Reason: err.Error()}
		}
		return b, nil
	}
	if len(s.Source) > MaxPluginFileSize {
		return nil, &LoadError{Plugin: s.Name, File: s.File, Reason: tooLarge("plugin source", MaxPluginFileSize).Error()}
	}
	return s.Source, nil
}

// syntaxError turns gopher-lua's parse errors ("FILE line:N(column:M) near
// 'x': reason") into a LoadError with the line.
func syntaxError(spec PluginSpec, src []byte, err error) error {
	var perr *parse.Error
	if errors.As(err, &perr) {
		// The parser's own message is only "syntax error" (or "parse
		// error"): then say it once, and what was left open where the scan
		// can tell (syntax.go). The lexer's messages say more.
		msg := strings.TrimSpace(perr.Message)
		generic := msg == "syntax error" || msg == "parse error"
		hint := ""
		if generic {
			hint = syntaxHint(src, spec.File, max(perr.Pos.Line, 0), perr.Pos.Column)
		}
		le := &LoadError{Plugin: spec.Name, File: spec.File, Line: perr.Pos.Line}
		near := "near " + sandbox.QuoteCut(perr.Token, MaxNameLen)
		if perr.Pos.Line <= 0 { // at the end of the chunk
			le.Line = bytes.Count(src, []byte("\n")) + 1
			near = "at end of file"
		}
		switch {
		case hint != "":
			le.Reason = hint + " " + strings.Replace(near, "at end of file", "near <eof>", 1)
		case generic:
			le.Reason = "syntax error " + near
		default:
			le.Reason = fmt.Sprintf("syntax error %s: %s", near, sandbox.Cut(msg, sandbox.MaxErrorText))
		}
		return le
	}
	msg := err.Error()
	le := &LoadError{Plugin: spec.Name, File: spec.File, Reason: sandbox.Cut(msg, sandbox.MaxErrorText)}
	if i := strings.Index(msg, "line:"); i >= 0 {
		fmt.Sscanf(msg[i+len("line:"):], "%d", &le.Line)
	}
	return le
}

// luaError turns an error raised while running Lua into a LoadError, taking
// "FILE:LINE: reason" apart when the message has it.
func luaError(spec PluginSpec, err error) error {
	var msg string
	var aerr *lua.ApiError
	if errors.As(err, &aerr) {
		msg = aerr.Object.String()
	} else {
		msg = err.Error()
	}
	// Only the start of the message is looked at and kept: a script's
	// error may be many MiB.
	msg = msg[:min(len(msg), len(spec.File)+32+sandbox.MaxErrorText)]
	return &LoadError{Plugin: spec.Name, File: spec.File, Line: lineOf(msg, spec.File), Reason: sandbox.Cut(stripWhere(msg, spec.File), sandbox.MaxErrorText)}
}

// lineOf finds "FILE:LINE:" in a Lua error message.
func lineOf(msg, file string) int {
	i := strings.Index(msg, file+":")
	if i < 0 {
		return 0
	}
	var line int
	fmt.Sscanf(msg[i+len(file)+1:], "%d", &line)
	return line
}

// stripWhere removes a leading "FILE:LINE: " from msg.
func stripWhere(msg, file string) string {
	if !strings.HasPrefix(msg, file+":") {
		return msg
	}
	rest := msg[len(file)+1:]
	if i := strings.Index(rest, ": "); i >= 0 {
		return rest[i+2:]
	}
	return msg
}

// quarantinedAt reports whether the plugin is quarantined at time now.
func (p *plugin) quarantinedAt(now int64) bool {
	until := p.quarantined.Load()
	return until != 0 && now < until
}

// tokenLimiter is a mutex-guarded token bucket for log lines.
type tokenLimiter struct {
	mu      sync.Mutex
	b       tokenbucket.Bucket
	started bool
	dropped int64
}

const (
	logRate  = 20.0  // lines per second per plugin
	logBurst = 100.0 // lines at once
)

// allow reports whether one more line may be logged at time now (ns); it
// returns how many were suppressed since the last allowed line.
func (t *tokenLimiter) allow(now int64) (ok bool, suppressed int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.started {
		t.b, t.started = tokenbucket.Full(logBurst, now), true
	}
	t.b.Refill(now, logRate, logBurst)
	if !t.b.Take(1) {
		t.dropped++
		return false, 0
	}
	suppressed, t.dropped = t.dropped, 0
	return true, suppressed
}

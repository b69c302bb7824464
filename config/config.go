// Package config reads luafw's YAML configuration file: the plugins to
// load and how the daemon diverts, queues and reports. Unknown keys are
// errors (a typo must not silently change what the firewall does), and
// every error names the file and line.
package config

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/luafw/luafw/internal/watchdog"
	"github.com/luafw/luafw/nfq/rules"

	"gopkg.in/yaml.v3"

	"github.com/luafw/luafw/host/state"
	"github.com/luafw/luafw/internal/engine"
)

// File is a whole configuration file.
type File struct {
	// Path is the file the configuration came from; plugin files are
	// relative to its directory.
	Path string `yaml:"-"`

	Plugins   []Plugin          `yaml:"plugins"`
	Queue     Queue             `yaml:"queue"`
	Divert    map[string]Filter `yaml:"divert"`
	Conntrack *bool             `yaml:"conntrack"`
	Marks     Marks             `yaml:"marks"`
	Offload   Offload           `yaml:"offload"`
	Inject    Inject            `yaml:"inject"`
	Log       Log               `yaml:"log"`
	Metrics   string            `yaml:"metrics"`
	Table     string            `yaml:"table"`
	// Budget is the time budget of every plugin that sets none (default
	// engine.DefaultBudget).
	Budget Duration `yaml:"budget"`
	// PacketBudget is the total time the Lua callbacks of one hook may
	// spend on one packet (engine.Options.PacketBudget; default 20ms, or
	// the longest plugin budget when that is longer).
	PacketBudget Duration `yaml:"packet_budget"`
	// Fail is what happens to diverted packets when luafw cannot judge
	// them: "open" (default) lets them pass, "closed" drops them. See
	// FailClosed and QueueFailOpen.
	Fail string `yaml:"fail"`
	// Events and Capture are off when absent (observe.go).
	Events  *Events  `yaml:"events"`
	Capture *Capture `yaml:"capture"`
	// State configures the shared state: where it is saved (file) and the
	// backend of cluster-scoped state (state.go). Absent: nothing saved,
	// cluster-scoped state stays in this process.
	State *State `yaml:"state"`

	// AllowDirs are directories every plugin may read files from
	// (net.load), besides its own; relative to the configuration's
	// directory.
	AllowDirs []string `yaml:"allow_dirs"`

	// PluginMemory is the memory limit of every plugin that sets none
	// (default engine.DefaultPluginMemory).
	PluginMemory Size `yaml:"plugin_memory"`
	// MemoryLimit is the process's memory ceiling (default
	// watchdog.DefaultMemoryLimit); MemoryCheck how often plugins' memory is
	// measured (default engine.DefaultMemoryCheckInterval).
	MemoryLimit Size     `yaml:"memory_limit"`
	MemoryCheck Duration `yaml:"memory_check"`
	// StateLimits bound each shared state map and bucket family.
	StateLimits StateLimits `yaml:"state_limits"`

	lines map[string]int // key path -> line, for errors
}

// StateLimits are the limits of each state map and bucket family; zero
// fields take host/state's defaults.
type StateLimits struct {
	MaxKeys  int  `yaml:"max_keys"`
	MaxBytes Size `yaml:"max_bytes"`
	MaxValue Size `yaml:"max_value"`
}

// Plugin is one entry of the plugins list.
type Plugin struct {
	File            string         `yaml:"file"`
	Name            string         `yaml:"name"`
	Options         map[string]any `yaml:"options"`
	OnError         string         `yaml:"on_error"`
	Budget          Duration       `yaml:"budget"`
	QuarantineAfter int            `yaml:"quarantine_after"`
	QuarantineFor   Duration       `yaml:"quarantine_for"`
	Memory          Size           `yaml:"memory"`
	Disabled        bool           `yaml:"disabled"`
	AllowDirs       []string       `yaml:"allow_dirs"` // more directories this plugin may read
}

// Queue configures the NFQUEUE side.
type Queue struct {
	Base     uint16 `yaml:"base"`      // first queue number luafw uses (default 1000)
	Balance  int    `yaml:"balance"`   // queues (and workers) per diversion (default 1)
	MaxLen   uint32 `yaml:"max_len"`   // kernel queue length (default 16384)
	FailOpen *bool  `yaml:"fail_open"` // accept instead of drop when the queue is full (default: fail is open)
	GSO      *bool  `yaml:"gso"`       // receive GSO packets unsegmented (default true)
	Burst    int    `yaml:"burst"`     // packets per receive (default 64)
}

// Filter narrows what one hook diverts; empty fields match anything.
type Filter struct {
	Protos []string `yaml:"protos"`
	DPorts []uint16 `yaml:"dports"`
	SPorts []uint16 `yaml:"sports"`
	In     []string `yaml:"in"`
	Out    []string `yaml:"out"`
	Src    []string `yaml:"src"`
	Dst    []string `yaml:"dst"`
}

// Marks are the packet mark bits luafw reserves for itself.
type Marks struct {
	Skip   *Hex `yaml:"skip"`   // a repeated packet carries it and skips our queues (default 0x80000000)
	Reject *Hex `yaml:"reject"` // with skip: the kernel rejects the packet (default 0x40000000)
	Inject *Hex `yaml:"inject"` // packets scripts send carry it and are never diverted (default 0x20000000)
	// Tags are the bits that carry tags across diversions, one bit per
	// tag (default 0x00ff0000: 8 tags); 0 carries none.
	Tags *Hex `yaml:"tags"`
}

// DefaultTagMarks are the mark bits that carry tags across diversions
// when marks.tags is not set.
const DefaultTagMarks = 0x00ff0000

// TagMarks returns marks.tags, or DefaultTagMarks without the bits other
// settings use (offload.mask and drop, marks.skip, reject, inject).
func (f *File) TagMarks() uint32 {
	if f.Marks.Tags != nil {
		return uint32(*f.Marks.Tags)
	}
	used := uint32(f.Offload.Mask) | uint32(f.Offload.Drop) | uint32(rules.DefaultSkipMark) | uint32(rules.DefaultRejectMark) | uint32(rules.DefaultInjectMark)
	for _, m := range []*Hex{f.Marks.Skip, f.Marks.Reject, f.Marks.Inject} {
		if m != nil {
			used |= uint32(*m)
		}
	}
	return DefaultTagMarks &^ used
}

// Inject bounds the packets each plugin may send (fw.send, pkt:reply_*):
// a token bucket per plugin.
type Inject struct {
	Rate  int `yaml:"rate"`  // packets per second (default engine.DefaultInjectRate)
	Burst int `yaml:"burst"` // bucket size (default engine.DefaultInjectBurst)
}

// Offload lets settled flows bypass the queues: packets whose conntrack
// mark has any of Mask's bits set are not diverted.
type Offload struct {
	Mask Hex `yaml:"mask"`
	// Drop: packets whose connection's mark has all these bits are dropped
	// by the diversion rules, never queued (a flow a plugin blocked and
	// marked, such as sni's block_mark: its retransmissions stay out).
	Drop Hex `yaml:"drop"`
}

// Log configures the daemon's logs.
type Log struct {
	Format string `yaml:"format"` // text (default) or json
	Level  string `yaml:"level"`  // debug, info (default), warn, error
}

// Duration is a time.Duration written as "2ms", "1.5s".
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: bad duration %q (want e.g. 2ms, 1s)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// Hex is a 32-bit value written in decimal or 0x hex.
type Hex uint32

// UnmarshalYAML parses 123 or 0x7b.
func (h *Hex) UnmarshalYAML(n *yaml.Node) error {
	v, err := strconv.ParseUint(n.Value, 0, 32)
	if err != nil {
		return fmt.Errorf("line %d: bad 32-bit value %q", n.Line, n.Value)
	}
	*h = Hex(v)
	return nil
}

// MaxFileSize bounds a configuration file: a larger one is refused with
// the limit, and nothing past it is read (a test file may name one).
const MaxFileSize = 4 << 20

// Load reads and checks a configuration file.
func Load(path string) (*File, error) {
	b, err := engine.ReadLimited(path, MaxFileSize, path+":")
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	f, err := Parse(b, path)
	if err != nil {
		return nil, err
	}
	if err := f.checkFiles(); err != nil {
		return nil, err
	}
	return f, nil
}

// Parse reads a configuration from b; path names it in errors and anchors
// relative plugin files. It touches no file: Load also checks that the
// plugin files exist.
func Parse(b []byte, path string) (*File, error) {
	f := &File{Path: path, lines: map[string]int{}}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		// "yaml: line 3: did not find expected key" -> "path:3: ..."
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			return nil, fmt.Errorf("%s:%s: YAML syntax: %s", path, m[1], m[2])
		}
		return nil, fmt.Errorf("%s: YAML syntax: %s", path, msg)
	}
	if len(root.Content) == 0 {
		return nil, fmt.Errorf("%s:1: the configuration is empty; it must list plugins (plugins: [{file: x.lua}])", path)
	}
	s := &shape{f: f, lines: f.lines}
	if err := s.walk(root.Content[0], reflect.TypeFor[File](), ""); err != nil {
		return nil, err
	}
	if err := root.Decode(f); err != nil {
		// shape should have refused whatever the decoder refuses.
		return nil, fmt.Errorf("%s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if err := f.check(); err != nil {
		return nil, err
	}
	return f, nil
}

var yamlLine = regexp.MustCompile(`^line (\d+): (.*)$`)

// line is the line of key path (e.g. "queue.balance", "plugins[0].file"),
// else of its nearest enclosing key, else 1.
func (f *File) line(path string) int {
	for path != "" {
		if l, ok := f.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 1
}

// has reports whether the file sets key path (even to 0 or an empty value).
func (f *File) has(path string) bool {
	_, ok := f.lines[path]
	return ok
}

func (f *File) errorf(line int, format string, args ...any) error {
	return fmt.Errorf("%s:%d: %s", f.Path, line, fmt.Sprintf(format, args...))
}

// ErrorAt is an error about key path (e.g. "queue.balance"), naming the
// file and the key's line.
func (f *File) ErrorAt(path, format string, args ...any) error {
	return f.errorf(f.line(path), format, args...)
}

// PluginSpecs returns the enabled plugins as engine specs, files resolved
// against the configuration's directory.
func (f *File) PluginSpecs() ([]engine.PluginSpec, error) {
	var specs []engine.PluginSpec
	for i, p := range f.Plugins {
		if p.Disabled {
			continue
		}
		file := f.pluginPath(p)
		budget := p.Budget
		if budget == 0 {
			budget = f.Budget
		}
		memory := p.Memory
		if memory == 0 {
			memory = f.PluginMemory
		}
		spec := engine.PluginSpec{Name: p.Name, File: file, Options: p.Options,
			Budget: time.Duration(budget), QuarantineAfter: p.QuarantineAfter, QuarantineFor: time.Duration(p.QuarantineFor),
			AllowDirs: f.dirs(f.AllowDirs, p.AllowDirs), Memory: int64(memory)}
		spec.Config = f.Path
		prefix := fmt.Sprintf("plugins[%d].options.", i)
		for k := range p.Options {
			if line := f.line(prefix + k); line > 0 {
				if spec.OptionLines == nil {
					spec.OptionLines = map[string]int{}
				}
				spec.OptionLines[k] = line
			}
		}
		if p.OnError != "" {
			v, err := engine.ParseVerdict(p.OnError)
			if err != nil {
				return nil, f.ErrorAt(fmt.Sprintf("plugins[%d].on_error", i), "on_error: %v", err)
			}
			spec.OnError = v
		}
		specs = append(specs, spec)
	}
	return specs, nil
}

// pluginPath is a plugin's file, relative ones resolved against the
// configuration's directory.
func (f *File) pluginPath(p Plugin) string {
	if filepath.IsAbs(p.File) {
		return p.File
	}
	return filepath.Join(filepath.Dir(f.Path), p.File)
}

// dirs joins lists of directories, relative ones resolved against the
// configuration's directory.
func (f *File) dirs(lists ...[]string) []string {
	var out []string
	for _, list := range lists {
		for _, d := range list {
			if !filepath.IsAbs(d) {
				d = filepath.Join(filepath.Dir(f.Path), d)
			}
			out = append(out, d)
		}
	}
	return out
}

// MemoryCeiling is the process memory ceiling: memory_limit, or
// watchdog.DefaultMemoryLimit. A nil File (a single plugin, no configuration)
// has the default.
func (f *File) MemoryCeiling() int64 {
	if f == nil || f.MemoryLimit <= 0 {
		return watchdog.DefaultMemoryLimit
	}
	return int64(f.MemoryLimit)
}

// EngineOptions are the engine settings of the configuration: the memory
// ceiling, the memory measurement interval and the state limits. The
// caller adds the logger and clock, and sets the Go runtime's limit
// (engine.SetMemoryCeiling(f.MemoryCeiling())).
func (f *File) EngineOptions() engine.Options {
	o := engine.Options{MemoryLimit: f.MemoryCeiling()}
	if f != nil {
		o.MemoryCheckInterval = time.Duration(f.MemoryCheck)
		o.StateLimits = state.Limits{MaxKeys: f.StateLimits.MaxKeys,
			MaxBytes: int64(f.StateLimits.MaxBytes), MaxValue: int(f.StateLimits.MaxValue)}
		o.InjectRate, o.InjectBurst = float64(f.Inject.Rate), f.Inject.Burst
		o.PacketBudget = time.Duration(f.PacketBudget)
	}
	return o
}

// ConntrackEnabled reports whether ct state and ct updates are on
// (default true).
func (f *File) ConntrackEnabled() bool { return f.Conntrack == nil || *f.Conntrack }

// Prefixes parses Src and Dst.
func (flt Filter) Prefixes() (src, dst []netip.Prefix, err error) {
	parse := func(list []string) ([]netip.Prefix, error) {
		var out []netip.Prefix
		for _, s := range list {
			if !strings.Contains(s, "/") {
				a, err := netip.ParseAddr(s)
				if err != nil {
					return nil, fmt.Errorf("bad address %q", s)
				}
				out = append(out, netip.PrefixFrom(a, a.BitLen()))
				continue
			}
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("bad prefix %q", s)
			}
			out = append(out, p.Masked())
		}
		return out, nil
	}
	if src, err = parse(flt.Src); err != nil {
		return nil, nil, err
	}
	dst, err = parse(flt.Dst)
	return src, dst, err
}

// ProtoNumbers parses Protos: names as engine.ParseProto reads them (the
// trace filter's too) or numbers 1..255.
func (flt Filter) ProtoNumbers() ([]uint8, error) {
	var out []uint8
	for _, s := range flt.Protos {
		p, err := engine.ParseProto(s)
		if err != nil {
			return nil, fmt.Errorf("unknown protocol %q", s)
		}
		out = append(out, p)
	}
	return out, nil
}

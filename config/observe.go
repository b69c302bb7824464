package config

import (
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/luafw/luafw/internal/engine"
)

// Defaults of the events, capture and state sections.
const (
	DefaultEventsMaxSize  = 10 << 20
	DefaultCaptureMaxSize = 32 << 20
	DefaultKeep           = 5
	DefaultEventsRate     = 100 // events per second
	DefaultQueueLen       = 4096
	DefaultSaveEvery      = time.Minute
	// Stdout as an events file writes the events to standard output.
	Stdout = "stdout"
)

// Events configures decision events: one JSON line per decision with one
// of Verdicts (docs/operating.md, "Decision events").
type Events struct {
	Verdicts []string `yaml:"verdicts"` // default drop, reject
	File     string   `yaml:"file"`     // a path, or "stdout"
	MaxSize  Size     `yaml:"max_size"` // rotate past this (default 10MiB)
	Keep     *int     `yaml:"keep"`     // rotated files kept (default 5)
	Rate     *Rate    `yaml:"rate"`     // events per second (default 100/s); 0 for no limit
	Burst    int      `yaml:"burst"`    // events at once above the rate (default: one second's worth)
	Queue    int      `yaml:"queue"`    // events waiting for the writer (default 4096)
}

// Capture configures packet capture to pcapng files: packets with one of
// Verdicts, and those a script asks for with pkt:capture().
type Capture struct {
	Verdicts []string `yaml:"verdicts"` // default drop, reject
	File     string   `yaml:"file"`     // the pcapng path
	MaxSize  Size     `yaml:"max_size"` // rotate past this (default 32MiB)
	Keep     *int     `yaml:"keep"`     // rotated files kept (default 5)
	Snaplen  int      `yaml:"snaplen"`  // bytes kept of each packet (default: all)
	Queue    int      `yaml:"queue"`    // packets waiting for the writer (default 4096)
}

// Rate is events per second, written as 100/s, 6000/m or 0 (no limit).
type Rate float64

func (r *Rate) parseScalar(v string) error {
	num, per, _ := strings.Cut(strings.TrimSpace(v), "/")
	div := 1.0
	switch per {
	case "", "s":
	case "m":
		div = 60
	case "h":
		div = 3600
	default:
		return fmt.Errorf("bad rate %q (want e.g. 100/s, 6000/m, or 0 for no limit)", v)
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n < 0 || math.IsInf(n, 0) || math.IsNaN(n) || (per == "" && n != 0) {
		return fmt.Errorf("bad rate %q (want e.g. 100/s, 6000/m, or 0 for no limit)", v)
	}
	*r = Rate(n / div)
	return nil
}

// UnmarshalYAML parses a rate.
func (r *Rate) UnmarshalYAML(n *yaml.Node) error {
	if err := r.parseScalar(n.Value); err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	return nil
}

// VerdictMask is a set of verdicts: bit v is set for engine.Verdict v.
type VerdictMask uint32

// Has reports whether v is in the set.
func (m VerdictMask) Has(v engine.Verdict) bool { return m&(1<<v) != 0 }

// VerdictSet returns the configured verdicts as a set (drop and reject
// when none are listed).
func VerdictSet(names []string) (VerdictMask, error) {
	if len(names) == 0 {
		return 1<<engine.Drop | 1<<engine.Reject, nil
	}
	var m VerdictMask
	for _, n := range names {
		v, err := engine.ParseVerdict(n)
		if err != nil {
			return 0, err
		}
		m |= 1 << v
	}
	return m, nil
}

// Resolve returns an events, capture or state file's path: relative ones
// are relative to the configuration's directory, as plugin files are.
func (f *File) Resolve(path string) string {
	if path == "" || path == Stdout || filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(filepath.Dir(f.Path), path)
}

// KeepOr is keep, or DefaultKeep when unset.
func KeepOr(keep *int) int {
	if keep == nil {
		return DefaultKeep
	}
	return *keep
}

// checkObserve checks the events, capture and state sections.
func (f *File) checkObserve() error {
	if e := f.Events; e != nil {
		if e.File == "" {
			return f.ErrorAt("events", "events: want file: (a path, or stdout)")
		}
		if err := f.checkOutput("events", e.Verdicts, e.Keep, e.Queue); err != nil {
			return err
		}
		if f.has("events.burst") && e.Burst < 1 {
			return f.ErrorAt("events.burst", "events.burst: want at least 1, not %d", e.Burst)
		}
	}
	if c := f.Capture; c != nil {
		if c.File == "" || c.File == Stdout {
			return f.ErrorAt("capture", "capture: want file: (the pcapng file's path)")
		}
		if err := f.checkOutput("capture", c.Verdicts, c.Keep, c.Queue); err != nil {
			return err
		}
		if f.has("capture.snaplen") && (c.Snaplen < 40 || c.Snaplen > 65535) {
			return f.ErrorAt("capture.snaplen", "capture.snaplen: want 40 to 65535 bytes, not %d", c.Snaplen)
		}
	}
	if s := f.State; s != nil {
		if s.File == "" && f.has("state.save_every") {
			return f.ErrorAt("state.save_every", "state.save_every: set state.file (where the state maps are saved) too")
		}
		if f.has("state.save_every") && s.SaveEvery < Duration(time.Second) {
			return f.ErrorAt("state.save_every", "state.save_every: want at least 1s, not %s", time.Duration(s.SaveEvery))
		}
	}
	return nil
}

func (f *File) checkOutput(sec string, verdicts []string, keep *int, queue int) error {
	for i, v := range verdicts {
		if _, err := engine.ParseVerdict(v); err != nil {
			return f.ErrorAt(fmt.Sprintf("%s.verdicts[%d]", sec, i), "%s.verdicts: %v", sec, err)
		}
	}
	if keep != nil && (*keep < 0 || *keep > 1000) {
		return f.ErrorAt(sec+".keep", "%s.keep: want 0 to 1000 rotated files, not %d", sec, *keep)
	}
	if f.has(sec+".queue") && (queue < 1 || queue > 1<<20) {
		return f.ErrorAt(sec+".queue", "%s.queue: want 1 to %d, not %d", sec, 1<<20, queue)
	}
	if f.has(sec + ".max_size") {
		var size Size
		if sec == "events" {
			size = f.Events.MaxSize
		} else {
			size = f.Capture.MaxSize
		}
		if size < 4096 {
			return f.ErrorAt(sec+".max_size", "%s.max_size: want at least 4KiB, not %d bytes", sec, size)
		}
	}
	return nil
}

package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/luafw/luafw/internal/engine"
	"github.com/luafw/luafw/netfilter"
	"github.com/luafw/luafw/nfq/rules"
)

// Limits of the settings.
const (
	// MaxBudget bounds a callback's time budget: a packet waits that long
	// for each callback, and its queue waits with it.
	MaxBudget = time.Second
	// MaxBurst is the most packets one receive call may take (the kernel
	// caps recvmmsg at UIO_MAXIOV, 1024).
	MaxBurst = 1024
	// MaxBalance bounds queue.balance: each balanced queue is a socket and
	// a worker thread per diversion, and more than the machine has cores
	// only costs memory; 256 leaves room for the largest machines.
	MaxBalance = 256
	// DefaultQueueBase is the first queue number luafw uses by default.
	DefaultQueueBase = 1000
	maxIfName        = 15 // IFNAMSIZ - 1
)

// check refuses settings that parse but cannot work, or that would
// silently mean something else than they say. Every error names the
// key's line.
func (f *File) check() error {
	for _, c := range []func() error{f.checkPlugins, f.checkBudget, f.checkQueue, f.checkMarks, f.checkDivert, f.checkRest, f.checkObserve, f.checkState} {
		if err := c(); err != nil {
			return err
		}
	}
	return nil
}

func (f *File) checkPlugins() error {
	if len(f.Plugins) == 0 {
		return f.ErrorAt("plugins", "plugins: no plugin listed; a configuration needs at least one (plugins: [{file: x.lua}])")
	}
	names := map[string]int{} // name -> line of the entry that took it
	for i, p := range f.Plugins {
		at := func(key string) string { return fmt.Sprintf("plugins[%d].%s", i, key) }
		entry := fmt.Sprintf("plugins[%d]", i)
		if p.File == "" {
			return f.ErrorAt(entry, "plugin entry %d has no file: (the Lua file to load)", i+1)
		}
		if p.OnError != "" {
			v, err := engine.ParseVerdict(p.OnError)
			if err != nil || (v != engine.Accept && v != engine.Drop && v != engine.Reject) {
				return f.ErrorAt(at("on_error"), "on_error: want accept, drop or reject, not %q", p.OnError)
			}
		}
		if err := f.checkDuration(at("budget"), time.Duration(p.Budget)); err != nil {
			return err
		}
		if f.has(at("quarantine_after")) && p.QuarantineAfter < 1 {
			return f.ErrorAt(at("quarantine_after"), "quarantine_after: want at least 1 consecutive failure (default %d), not %d", engine.DefaultQuarantineAfter, p.QuarantineAfter)
		}
		if f.has(at("quarantine_for")) && p.QuarantineFor <= 0 {
			return f.ErrorAt(at("quarantine_for"), "quarantine_for: want a positive duration (default %s), not %s", engine.DefaultQuarantineFor, time.Duration(p.QuarantineFor))
		}
		if p.Disabled {
			continue
		}
		name := p.Name
		if name == "" {
			name = strings.TrimSuffix(filepath.Base(p.File), ".lua")
		}
		line := f.line(entry)
		if first, dup := names[name]; dup {
			return f.errorf(line, "plugin name %q is taken by the plugin at line %d; give one of them another name: key", name, first)
		}
		names[name] = line
	}
	return nil
}

// checkDuration refuses a budget that is set but not positive, or too long.
func (f *File) checkDuration(path string, d time.Duration) error {
	if !f.has(path) {
		return nil
	}
	key := path[strings.LastIndexByte(path, '.')+1:]
	if d <= 0 {
		return f.ErrorAt(path, "%s: want a positive duration such as 2ms (default %s), not %s", key, engine.DefaultBudget, d)
	}
	if d > MaxBudget {
		return f.ErrorAt(path, "%s: %s is more than %s; a packet (and its queue) waits that long for each callback", key, d, MaxBudget)
	}
	return nil
}

func (f *File) checkBudget() error {
	if err := f.checkDuration("budget", time.Duration(f.Budget)); err != nil {
		return err
	}
	return f.checkDuration("packet_budget", time.Duration(f.PacketBudget))
}

func (f *File) checkQueue() error {
	q := f.Queue
	if f.has("queue.base") && q.Base == 0 {
		return f.ErrorAt("queue.base", "queue.base: want a queue number from 1 to 65535 (default %d), not 0", DefaultQueueBase)
	}
	if f.has("queue.balance") && q.Balance < 1 {
		return f.ErrorAt("queue.balance", "queue.balance: want at least 1 queue per diversion (default 1), not %d", q.Balance)
	}
	if q.Balance > MaxBalance {
		return f.ErrorAt("queue.balance", "queue.balance: %d queues (sockets and worker threads) per diversion is more than %d; want about one per core", q.Balance, MaxBalance)
	}
	if f.has("queue.max_len") && q.MaxLen == 0 {
		return f.ErrorAt("queue.max_len", "queue.max_len: want at least 1 packet, not 0")
	}
	if f.has("queue.burst") && (q.Burst < 1 || q.Burst > MaxBurst) {
		return f.ErrorAt("queue.burst", "queue.burst: want 1 to %d packets per receive, not %d", MaxBurst, q.Burst)
	}
	return f.CheckQueueRange(1)
}

// CheckQueueRange refuses queue settings whose queue numbers for the given
// number of diversions would run past 65535: each diversion takes a block
// of balance queues, times the five conntrack states when conntrack is on.
func (f *File) CheckQueueRange(diversions int) error {
	base, balance := int(f.Queue.Base), max(1, f.Queue.Balance)
	if base == 0 {
		base = DefaultQueueBase
	}
	states := 1
	if f.ConntrackEnabled() {
		states = netfilter.NumCTStates
	}
	last := base + diversions*balance*states - 1
	if last <= 0xffff {
		return nil
	}
	at := "queue"
	if f.has("queue.balance") {
		at = "queue.balance"
	} else if f.has("queue.base") {
		at = "queue.base"
	}
	return f.ErrorAt(at, "queue: %d diversion(s) × balance %d × %d conntrack state queue(s), from queue.base %d, need queues up to %d, beyond 65535; lower queue.base or queue.balance",
		diversions, balance, states, base, last)
}

func (f *File) checkMarks() error {
	skip, reject := uint32(rules.DefaultSkipMark), uint32(rules.DefaultRejectMark)
	if m := f.Marks.Skip; m != nil {
		if *m == 0 {
			return f.ErrorAt("marks.skip", "marks.skip: want at least one bit (default %#x), not 0", rules.DefaultSkipMark)
		}
		skip = uint32(*m)
	}
	if m := f.Marks.Reject; m != nil {
		if *m == 0 {
			return f.ErrorAt("marks.reject", "marks.reject: want at least one bit (default %#x), not 0", rules.DefaultRejectMark)
		}
		reject = uint32(*m)
	}
	if skip&reject != 0 {
		at := "marks.reject"
		if f.Marks.Reject == nil {
			at = "marks.skip"
		}
		return f.ErrorAt(at, "marks.skip %#x and marks.reject %#x share bits %#x; each needs bits of its own", skip, reject, skip&reject)
	}
	inject := uint32(rules.DefaultInjectMark)
	if m := f.Marks.Inject; m != nil {
		inject = uint32(*m)
	}
	if inject == 0 || inject&(skip|reject) != 0 {
		return f.ErrorAt("marks.inject", "marks.inject %#x: want bits of its own, apart from marks.skip %#x and marks.reject %#x", inject, skip, reject)
	}
	if f.Marks.Tags != nil {
		if t := uint32(*f.Marks.Tags); t&(skip|reject|inject|uint32(f.Offload.Mask)) != 0 {
			return f.ErrorAt("marks.tags", "marks.tags %#x overlaps marks.skip %#x, marks.reject %#x, marks.inject %#x or offload.mask %#x; pick other bits",
				t, skip, reject, inject, uint32(f.Offload.Mask))
		}
	}
	if m := uint32(f.Offload.Mask); m&(skip|reject) != 0 {
		return f.ErrorAt("offload.mask", "offload.mask %#x overlaps luafw's reserved mark bits %#x (marks.skip %#x, marks.reject %#x); pick other bits",
			m, m&(skip|reject), skip, reject)
	}
	if m := uint32(f.Offload.Drop); m&(skip|reject) != 0 {
		return f.ErrorAt("offload.drop", "offload.drop %#x overlaps luafw's reserved mark bits %#x (marks.skip %#x, marks.reject %#x); pick other bits",
			m, m&(skip|reject), skip, reject)
	}
	return nil
}

func (f *File) checkDivert() error {
	for hook, flt := range f.Divert {
		at := "divert." + hook
		if err := engine.NetdevHookError(hook); err != nil {
			return f.ErrorAt(at, "divert: %v", err)
		}
		if _, err := netfilter.ParseHook(hook); err != nil {
			return f.ErrorAt(at, "divert: unknown hook %q; want one of %s", hook, hookNames())
		}
		protos, err := flt.ProtoNumbers()
		if err != nil {
			return f.ErrorAt(at+".protos", "%s.protos: %v", at, err)
		}
		for _, ports := range []struct {
			key  string
			list []uint16
		}{{"dports", flt.DPorts}, {"sports", flt.SPorts}} {
			for i, p := range ports.list {
				if p == 0 {
					return f.ErrorAt(fmt.Sprintf("%s.%s[%d]", at, ports.key, i), "%s.%s: port 0 matches no packet; want 1 to 65535", at, ports.key)
				}
			}
			if len(ports.list) == 0 {
				continue
			}
			for _, p := range protos {
				if !rules.HasPorts(p) {
					return f.ErrorAt(at+"."+ports.key, "%s.%s: protocol %d in %s.protos has no ports", at, ports.key, p, at)
				}
			}
		}
		for _, key := range []string{"in", "out"} {
			list := flt.In
			if key == "out" {
				list = flt.Out
			}
			for i, name := range list {
				if err := checkIfName(name); err != nil {
					return f.ErrorAt(fmt.Sprintf("%s.%s[%d]", at, key, i), "%s.%s: %v", at, key, err)
				}
			}
		}
		if err := f.checkPrefixes(at, flt); err != nil {
			return err
		}
	}
	return nil
}

func checkIfName(name string) error {
	base := strings.TrimSuffix(name, "*")
	switch {
	case name == "":
		return errors.New("empty interface name")
	case len(base) > maxIfName:
		return fmt.Errorf("interface name %q is longer than %d characters", name, maxIfName)
	case strings.ContainsAny(base, "*/ \t"):
		return fmt.Errorf("interface name %q: '*' may only end a name, and '/' or spaces never appear", name)
	}
	return nil
}

// checkPrefixes refuses unparsable addresses and prefixes with host bits
// (10.0.0.1/8: a typo of 10.0.0.0/8 or of 10.0.0.1/32?).
func (f *File) checkPrefixes(at string, flt Filter) error {
	for _, key := range []string{"src", "dst"} {
		list := flt.Src
		if key == "dst" {
			list = flt.Dst
		}
		for i, s := range list {
			path := fmt.Sprintf("%s.%s[%d]", at, key, i)
			if _, _, err := (Filter{Src: []string{s}}).Prefixes(); err != nil {
				return f.ErrorAt(path, "%s.%s: %v (want an address or a prefix such as 10.0.0.0/8)", at, key, err)
			}
			if p, err := netip.ParsePrefix(s); err == nil && p != p.Masked() {
				return f.ErrorAt(path, "%s.%s: %q has bits set past its prefix length; did you mean %s?", at, key, s, p.Masked())
			}
		}
	}
	return nil
}

func hookNames() string {
	names := netfilter.HookNames()
	return strings.Join(names[:], ", ")
}

func (f *File) checkRest() error {
	switch f.Log.Format {
	case "", "text", "json":
	default:
		return f.ErrorAt("log.format", "log.format: want text or json, not %q", f.Log.Format)
	}
	switch f.Log.Level {
	case "", "debug", "info", "warn", "error":
	default:
		return f.ErrorAt("log.level", "log.level: want debug, info, warn or error, not %q", f.Log.Level)
	}
	if f.Inject.Rate < 0 || f.Inject.Burst < 0 {
		return f.ErrorAt("inject", "inject: rate and burst must not be negative")
	}
	switch f.Fail {
	case "", "open", "closed":
	default:
		return f.ErrorAt("fail", "fail: want open or closed, not %q", f.Fail)
	}
	if f.has("table") {
		if err := rules.CheckTableName(f.Table); err != nil {
			return f.ErrorAt("table", "table: %v", err)
		}
	}
	if f.Metrics != "" {
		_, port, err := net.SplitHostPort(f.Metrics)
		if n, perr := strconv.ParseUint(port, 10, 16); err != nil || perr != nil || (n == 0 && port != "0") {
			return f.ErrorAt("metrics", "metrics: want host:port such as 127.0.0.1:9153, not %q", f.Metrics)
		}
	}
	return nil
}

// checkFiles refuses enabled plugins whose file is missing or not a file,
// naming the configuration's line (the engine would name only the file).
func (f *File) checkFiles() error {
	for i, p := range f.Plugins {
		if p.Disabled {
			continue
		}
		file := f.pluginPath(p)
		at := fmt.Sprintf("plugins[%d].file", i)
		st, err := os.Stat(file)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return f.ErrorAt(at, "file: plugin %s does not exist (looked for %s)", p.File, file)
		case err != nil:
			return f.ErrorAt(at, "file: plugin %s: %v", p.File, err)
		case !st.Mode().IsRegular():
			return f.ErrorAt(at, "file: plugin %s is not a regular file", p.File)
		}
	}
	return nil
}

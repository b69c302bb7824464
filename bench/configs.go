package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"text/template"
)

// configParams fill the configuration templates in bench/configs.
type configParams struct {
	Repo        string // the repository root (absolute): plugins/ lives there
	BenchDir    string // bench/ (absolute)
	ListFile    string // the generated blocklist (absolute)
	Balance     int    // queues per diversion
	Conntrack   bool   // per-ct-state queues
	OffloadMask uint32 // offload.mask; 0 leaves offload off
	IperfPort   int    // the port classify offloads
	Redis       string // host:port of a Redis: the rate limiter's state is cluster-scoped on it
}

// ListDir is the blocklist's directory, which the configuration lets the
// blocklist plugin read (allow_dirs).
func (p configParams) ListDir() string { return filepath.Dir(p.ListFile) }

// renderConfig writes template bench/configs/NAME.yaml.tmpl filled with p to
// dir/FILE and returns its path.
func renderConfig(benchDir, name, dir, file string, p configParams) (string, error) {
	src := filepath.Join(benchDir, "configs", name+".yaml.tmpl")
	t, err := template.New(filepath.Base(src)).Funcs(template.FuncMap{"dir": filepath.Dir}).ParseFiles(src)
	if err != nil {
		return "", fmt.Errorf("config template: %w", err)
	}
	out := filepath.Join(dir, file)
	f, err := os.Create(out)
	if err != nil {
		return "", fmt.Errorf("config %s: %w", out, err)
	}
	if err := t.Execute(f, p); err != nil {
		f.Close()
		return "", fmt.Errorf("config %s from %s: %w", out, src, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("config %s: %w", out, err)
	}
	return out, nil
}

// writeBlocklist writes n distinct IPv4 CIDRs (prefix lengths 12-32) to
// path, none inside 0/8, 10/8 (the lab), 127/8 or 224/3. The list is the
// same on every run (a fixed seed).
func writeBlocklist(path string, n int) error {
	rng := rand.New(rand.NewPCG(5, 1000))
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("blocklist: %w", err)
	}
	w := bufio.NewWriter(f)
	fmt.Fprintf(w, "# %d generated CIDRs for the luafw benchmark\n", n)
	seen := make(map[netip.Prefix]bool, n)
	for len(seen) < n {
		var b [4]byte
		v := rng.Uint32()
		b[0], b[1], b[2], b[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
		if b[0] == 0 || b[0] == 10 || b[0] == 127 || b[0] >= 224 {
			continue
		}
		p := netip.PrefixFrom(netip.AddrFrom4(b), 12+rng.IntN(21)).Masked()
		if seen[p] {
			continue
		}
		seen[p] = true
		fmt.Fprintln(w, p)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("blocklist %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("blocklist %s: %w", path, err)
	}
	return nil
}

//go:build ignore

// modzip writes one version of a module into a directory laid out as a
// GOPROXY (file://DIR): DIR/<module>/@v/{list,VERSION.info,VERSION.mod,
// VERSION.zip}. scripts/check-install.sh runs it, in a module of its own
// that requires golang.org/x/mod, so that luafw's go.mod needs no tool
// dependency.
//
//	go run modzip.go -src DIR -module PATH -version VERSION -time RFC3339 -out PROXYDIR
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/zip"
)

func main() {
	src := flag.String("src", "", "the module's files (its go.mod at the top)")
	path := flag.String("module", "", "module path")
	version := flag.String("version", "", "version, such as v0.1.0")
	when := flag.String("time", "", "the version's time, RFC 3339 (the commit's)")
	out := flag.String("out", "", "the proxy directory")
	flag.Parse()
	if err := run(*src, *path, *version, *when, *out); err != nil {
		fmt.Fprintln(os.Stderr, "modzip:", err)
		os.Exit(1)
	}
}

func run(src, path, version, when, out string) error {
	m := module.Version{Path: path, Version: version}
	if err := module.Check(path, version); err != nil {
		return err
	}
	t, err := time.Parse(time.RFC3339, when)
	if err != nil {
		return err
	}
	esc, err := module.EscapePath(path)
	if err != nil {
		return err
	}
	dir := filepath.Join(out, filepath.FromSlash(esc), "@v")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	gomod, err := os.ReadFile(filepath.Join(src, "go.mod"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, version+".mod"), gomod, 0o644); err != nil {
		return err
	}
	info, err := json.Marshal(struct {
		Version string
		Time    time.Time
	}{version, t.UTC()})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, version+".info"), info, 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, version+".zip"))
	if err != nil {
		return err
	}
	if err := zip.CreateFromDir(f, m, src); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "list"), []byte(version+"\n"), 0o644)
}

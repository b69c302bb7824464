package plugintest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/luafw/luafw/config"
	"github.com/luafw/luafw/internal/engine"
)

// The docs' examples are tested as follows (docs/lua-api.md and
// docs/plugins.md say the same at their top):
//
//   - Every ```lua block in docs/*.md starts with a line
//     "-- example: NAME". Other fenced blocks (yaml, text) are examples when
//     their first line is "# example: NAME". The marker line stays in the
//     file (a comment), so line numbers match the block.
//   - The examples of one document are written, under their names, into a
//     directory of their own, so that a test harness()es a plugin of the same
//     document and a configuration names it.
//   - NAME ending in _test.lua: run by the test runner; it must declare at
//     least one test and every test must pass.
//   - Other .lua: a plugin; it must load (as `luafw check` would), except
//     that a NAME starting with "bad_" must fail to load.
//   - .yaml: a configuration; it must parse and its plugins must load.
//   - Other files (a CIDR list for net.load) are only written.
//   - NAME starting with "examples/" must be byte for byte the file of that
//     name under docs/examples/ without the marker line; those files are
//     also tested in place by the same rules.

const docsDir = "../docs"

// example is one fenced block of a document.
type example struct {
	doc  string // docs/NAME.md
	line int    // of the opening fence
	name string
	body []byte
}

var (
	fenceRE  = regexp.MustCompile("^```([A-Za-z0-9_-]*)\\s*$")
	markerRE = regexp.MustCompile(`^(?:--|#) example: (\S+)\s*$`)
)

// docExamples returns the examples of a Markdown file; untagged lua blocks
// are errors.
func docExamples(t *testing.T, path string) []example {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []example
	sc := bufio.NewScanner(f)
	n := 0
	var cur *example
	var lang string
	for sc.Scan() {
		n++
		line := sc.Text()
		if cur == nil {
			if m := fenceRE.FindStringSubmatch(line); m != nil && m[1] != "" {
				cur, lang = &example{doc: path, line: n}, m[1]
			}
			continue
		}
		if strings.TrimSpace(line) == "```" {
			if cur.name == "" && lang == "lua" {
				t.Errorf("%s:%d: a lua block must start with \"-- example: NAME\"", path, cur.line)
			}
			if cur.name != "" {
				out = append(out, *cur)
			}
			cur = nil
			continue
		}
		if len(cur.body) == 0 && cur.name == "" {
			if m := markerRE.FindStringSubmatch(line); m != nil {
				cur.name = m[1]
			}
		}
		cur.body = append(cur.body, line+"\n"...)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur != nil {
		t.Errorf("%s:%d: unclosed code block", path, cur.line)
	}
	return out
}

// TestDocs runs every example of docs/*.md.
func TestDocs(t *testing.T) {
	docs, err := filepath.Glob(filepath.Join(docsDir, "*.md"))
	if err != nil || len(docs) == 0 {
		t.Fatalf("no docs in %s (%v)", docsDir, err)
	}
	total := 0
	for _, doc := range docs {
		exs := docExamples(t, doc)
		if len(exs) == 0 {
			continue
		}
		total += len(exs)
		t.Run(filepath.Base(doc), func(t *testing.T) {
			dir := t.TempDir()
			where := map[string]string{} // file -> doc:line
			for _, ex := range exs {
				file := filepath.Join(dir, filepath.FromSlash(ex.name))
				if prev, dup := where[file]; dup {
					t.Errorf("%s:%d: example %s is already defined at %s", ex.doc, ex.line, ex.name, prev)
				}
				where[file] = fmt.Sprintf("%s:%d", ex.doc, ex.line)
				if rel, ok := strings.CutPrefix(ex.name, "examples/"); ok {
					// The file is the block without its marker line.
					ex.body = ex.body[bytes.IndexByte(ex.body, '\n')+1:]
					want, err := os.ReadFile(filepath.Join(docsDir, "examples", filepath.FromSlash(rel)))
					if err != nil {
						t.Errorf("%s:%d: %v", ex.doc, ex.line, err)
					} else if !bytes.Equal(want, ex.body) {
						t.Errorf("%s:%d: the block differs from docs/examples/%s: copy the file into the doc", ex.doc, ex.line, rel)
					}
				}
				if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, ex.body, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			checkExampleDir(t, dir, where)
		})
	}
	if total < 10 {
		t.Errorf("only %d examples in the docs", total)
	}
}

// TestDocExamplesDir runs docs/examples in place.
func TestDocExamplesDir(t *testing.T) {
	dir := filepath.Join(docsDir, "examples")
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
	checkExampleDir(t, dir, nil)
}

// checkExampleDir applies the rules above to every file under dir. where
// maps files to the doc line they came from, for messages.
func checkExampleDir(t *testing.T, dir string, where map[string]string) {
	t.Helper()
	place := func(file string) string {
		if w, ok := where[file]; ok {
			return w + " (" + filepath.Base(file) + ")"
		}
		return file
	}
	var tests []string
	err := filepath.WalkDir(dir, func(file string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		base := filepath.Base(file)
		switch {
		case strings.HasSuffix(base, Suffix):
			tests = append(tests, file)
		case strings.HasSuffix(base, ".lua"):
			err := loadSpecs([]engine.PluginSpec{{File: file}})
			if strings.HasPrefix(base, "bad_") {
				if err == nil {
					t.Errorf("%s: loads, but a bad_ example must fail to load", place(file))
				} else {
					t.Logf("%s fails to load as it should: %v", place(file), err)
				}
			} else if err != nil {
				t.Errorf("%s: %v", place(file), err)
			}
		case strings.HasSuffix(base, ".yaml"):
			cfg, err := config.Load(file)
			if err != nil {
				t.Errorf("%s: %v", place(file), err)
				return nil
			}
			specs, err := cfg.PluginSpecs()
			if err == nil {
				err = loadSpecs(specs)
			}
			if err != nil {
				t.Errorf("%s: %v", place(file), err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range tests {
		var out strings.Builder
		sum := Run(context.Background(), []string{file}, Options{Out: &out})
		if sum.Failed > 0 || sum.Passed == 0 {
			t.Errorf("%s: %v (want at least one test, none failed):\n%s", place(file), sum, out.String())
		}
	}
}

// loadSpecs loads plugins into a throwaway engine.
func loadSpecs(specs []engine.PluginSpec) error {
	eng := engine.New(engine.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer eng.Close()
	return eng.Load(specs)
}

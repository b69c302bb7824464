package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A plugin file over MaxPluginFileSize is refused with the file and the
// limit, without being read: a sparse file of 64 GiB costs nothing. One of
// exactly the limit loads; a Source over it is refused too.
func TestPluginFileSizeLimit(t *testing.T) {
	dir := t.TempDir()
	sparse := filepath.Join(dir, "sparse.lua")
	f, err := os.Create(sparse)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(64 << 30); err != nil {
		t.Skipf("no sparse files here: %v", err)
	}
	f.Close()
	e, _ := newTestEngine(t)
	t0 := time.Now()
	err = e.Load([]PluginSpec{{File: sparse}})
	var le *LoadError
	if !errors.As(err, &le) || le.File != sparse || !strings.Contains(le.Reason, fmt.Sprint(MaxPluginFileSize)) {
		t.Fatalf("64 GiB plugin file: %v, want a LoadError naming the file and the limit", err)
	}
	if d := time.Since(t0); d > time.Second {
		t.Errorf("refusing it took %v", d)
	}

	exact := filepath.Join(dir, "exact.lua")
	body := "-- " + strings.Repeat("x", MaxPluginFileSize-4) + "\n"
	if err := os.WriteFile(exact, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.Load([]PluginSpec{{File: exact}}); err != nil {
		t.Fatalf("a plugin of exactly %d bytes: %v", MaxPluginFileSize, err)
	}
	if err := os.WriteFile(exact, []byte(body+" "), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.Load([]PluginSpec{{File: exact}}); err == nil || !strings.Contains(err.Error(), "larger than the limit") {
		t.Fatalf("one byte over: %v", err)
	}
	if err := e.Load([]PluginSpec{src("big", body+" ")}); err == nil || !strings.Contains(err.Error(), "larger than the limit") {
		t.Fatalf("Source one byte over: %v", err)
	}
	// Not a regular file: read up to the limit and refused.
	if err := e.Load([]PluginSpec{{File: "/dev/zero", Name: "zero"}}); err == nil || !strings.Contains(err.Error(), "larger than the limit") {
		t.Fatalf("/dev/zero: %v", err)
	}
}

// PrepareContext stops at its context within milliseconds: in the parse
// and compile of a large chunk, in a top-level loop, and in net.load of a
// long list. The error says it was cancelled.
func TestPrepareContextCancel(t *testing.T) {
	dir := t.TempDir()
	var list strings.Builder
	for i := 0; i < 1_900_000; i++ {
		fmt.Fprintf(&list, "10.%d.%d.%d\n", i>>16&255, i>>8&255, i&255)
	}
	if err := os.WriteFile(filepath.Join(dir, "l.txt"), []byte(list.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"compile":   strings.Repeat("a=1\n", (MaxPluginFileSize-1)/4),
		"top level": "while true do end",
		"net.load":  `local s = net.load("l.txt")`,
	}
	for name, code := range cases {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(dir, "p.lua")
			if err := os.WriteFile(file, []byte(code), 0o644); err != nil {
				t.Fatal(err)
			}
			e, _ := newTestEngine(t)
			ctx, cancel := context.WithCancelCause(context.Background())
			var cancelled time.Time
			go func() {
				time.Sleep(40 * time.Millisecond)
				cancelled = time.Now()
				cancel(errors.New("signal"))
			}()
			_, err := e.PrepareContext(ctx, []PluginSpec{{File: file}})
			took := time.Since(cancelled)
			if err == nil || !strings.Contains(err.Error(), "cancelled: signal") {
				t.Fatalf("err %v, want cancelled", err)
			}
			if took > 300*time.Millisecond {
				t.Errorf("returned %v after the cancel", took)
			}
			t.Logf("%s: returned %v after the cancel: %v", name, took, err)
		})
	}
}

// A list file over MaxListFileSize is refused before it is read; one over
// MaxListEntries at the entry past the limit. Both errors name the limit.
func TestListFileLimits(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "sparse.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(64 << 30); err != nil {
		t.Skipf("no sparse files here: %v", err)
	}
	f.Close()
	var list strings.Builder
	for i := 0; i <= MaxListEntries; i++ {
		fmt.Fprintf(&list, "11.%d.%d.%d\n", i>>16&255, i>>8&255, i&255)
	}
	if err := os.WriteFile(filepath.Join(dir, "many.txt"), []byte(list.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		"sparse.txt": fmt.Sprintf("larger than the limit of %d bytes", MaxListFileSize),
		"many.txt":   fmt.Sprintf("more than %d entries", MaxListEntries),
	} {
		if file == "many.txt" && raceEnabled {
			// Reading 2M entries takes most of the 2 s load budget under the
			// race detector on a busy machine; the plain run checks it.
			t.Logf("%s: not run under the race detector", file)
			continue
		}
		p := filepath.Join(dir, "p.lua")
		if err := os.WriteFile(p, []byte(`net.load("`+file+`")`), 0o644); err != nil {
			t.Fatal(err)
		}
		e, _ := newTestEngine(t)
		t0 := time.Now()
		err := e.Load([]PluginSpec{{File: p}})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", file, err, want)
		}
		t.Logf("%s: %v in %v", file, err, time.Since(t0))
	}
}

package rotate

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestRotateBySizeKeepsN(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ev.json")
	f, err := Open(path, 100, 2, func() []byte { return []byte("H\n") })
	if err != nil {
		t.Fatal(err)
	}
	rec := bytes.Repeat([]byte("x"), 39)
	rec = append(rec, '\n') // 40 bytes: two fit after the header (2+80), the third rotates
	for i := 0; i < 7; i++ {
		if _, err := f.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// 7 records, 2 per file: files hold 2,2,2,1; only current + 2 kept.
	want := map[string]int{path: 1, path + ".1": 2, path + ".2": 2}
	for p, n := range want {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte("H\n")) || len(b) != 2+40*n {
			t.Errorf("%s: %d bytes, want the header and %d records", p, len(b), n)
		}
	}
	if _, err := os.Stat(path + ".3"); err == nil {
		t.Error("a third rotated file was kept")
	}
}

func TestOversizedRecordGetsItsOwnFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a")
	f, err := Open(path, 10, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("abc"))
	f.Write(bytes.Repeat([]byte("y"), 30))
	f.Write([]byte("z"))
	f.Close()
	if b, _ := os.ReadFile(path + ".1"); len(b) != 30 {
		t.Errorf(".1 holds %q, want the 30-byte record alone", b)
	}
	if b, _ := os.ReadFile(path); string(b) != "z" {
		t.Errorf("current holds %q", b)
	}
}

func TestReopenAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a")
	hdr := func() []byte { return []byte("H") }
	for i := 0; i < 2; i++ {
		f, err := Open(path, 0, 1, hdr)
		if err != nil {
			t.Fatal(err)
		}
		f.Write([]byte("r"))
		f.Close()
	}
	if b, _ := os.ReadFile(path); string(b) != "Hrr" {
		t.Errorf("got %q, want one header then both records", b)
	}
}

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestDemo runs the whole demo (what `make demo` does) so it cannot rot.
func TestDemo(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the demo needs root (network namespaces, nftables, NFQUEUE)")
	}
	bin := filepath.Join(t.TempDir(), "luafw")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/luafw/luafw/cmd/luafw").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	failed, err := run(context.Background(), bin, "luafw.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range failed {
		t.Errorf("✗ %s", f)
	}
}

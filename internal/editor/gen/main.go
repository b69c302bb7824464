// Command gen writes the editor and lint definitions of luafw's script API
// (package editor) to a directory, dist/editor by default:
//
//	go run ./internal/editor/gen [DIR]
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/luafw/luafw/internal/editor"
)

func main() {
	dir := filepath.Join("dist", "editor")
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for name, b := range editor.Files() {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}

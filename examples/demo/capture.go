package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/luafw/luafw/pcap"
)

// captureFile is where examples/demo/luafw.yaml's capture section writes.
const captureFile = "/tmp/luafw-demo/drops.pcapng"

// printCapture shows the capture file luafw wrote (as tcpdump reads it, and
// each packet's comment) and returns the comments.
func printCapture(ctx context.Context) ([]string, error) {
	fmt.Printf("\npackets luafw captured (%s):\n", captureFile)
	if tcpdump, err := exec.LookPath("tcpdump"); err == nil {
		out, err := exec.CommandContext(ctx, tcpdump, "-nn", "-r", captureFile).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("tcpdump -r: %v\n%s", err, out)
		}
		fmt.Printf("  $ tcpdump -nn -r %s\n%s", captureFile, indent(string(out)))
	}
	f, err := os.Open(captureFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := pcap.NewReader(f)
	if err != nil {
		return nil, err
	}
	var comments []string
	fmt.Println("  packet comments (who decided):")
	for {
		p, err := r.Next()
		if err == io.EOF {
			return comments, nil
		}
		if err != nil {
			return nil, err
		}
		comments = append(comments, p.Comment)
		fmt.Printf("    %d: %s\n", p.N, p.Comment)
	}
}

// capturedBy reports whether any comment names the plugin and verdict.
func capturedBy(comments []string, plugin, verdict string) bool {
	for _, c := range comments {
		if strings.HasPrefix(c, "plugin="+plugin+" ") && strings.Contains(c, " verdict="+verdict+" ") {
			return true
		}
	}
	return false
}

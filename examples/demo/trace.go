package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/luafw/luafw/tests/lab"
)

// traceDuring runs `luafw trace` in the router (the dropped packets to port
// 23, one) while fn sends the traffic, and returns what it printed.
func traceDuring(ctx context.Context, ns *lab.NS, bin string, d *luafwProc, fn func()) (string, error) {
	abs, err := filepath.Abs(bin)
	if err != nil {
		return "", err
	}
	attached := strings.Count(d.logs.String(), "trace attached")
	cmd, err := ns.Command(ctx, abs, "trace", "-n", "1", "--for", "20s", "--verdict", "drop", `pkt.dport == 23 and pkt.proto == "tcp"`)
	if err != nil {
		return "", err
	}
	out := &lockedBuf{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for deadline := time.Now().Add(10 * time.Second); strings.Count(d.logs.String(), "trace attached") == attached; {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-done
			return "", fmt.Errorf("luafw trace did not attach:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	fn()
	select {
	case err = <-done:
	case <-time.After(25 * time.Second):
		cmd.Process.Kill()
		err = <-done
	}
	if err != nil {
		return "", fmt.Errorf("luafw trace: %v:\n%s", err, out)
	}
	return out.String(), nil
}

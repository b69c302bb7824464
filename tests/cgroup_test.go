package tests

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/luafw/luafw/nfq/cgroup"
	"github.com/luafw/luafw/tests/lab"
)

// TestCgroupMatchOnKernelPath: a callback with match = {cgroup = ...} on the
// output hook drops the connections of processes in that cgroup (and below
// it), not those of a process in another cgroup; the match is in the
// kernel rule (`socket cgroupv2 level 2`), and pkt.cgroup names a
// process's cgroup. The test makes its own cgroup subtree and removes it.
func TestCgroupMatchOnKernelPath(t *testing.T) {
	root, err := cgroup.Mount()
	if err != nil {
		t.Skip(err)
	}
	base := fmt.Sprintf("luafw-test-%d", os.Getpid())
	for _, dir := range []string{"blocked/sub", "other"} {
		if err := os.MkdirAll(filepath.Join(root, base, dir), 0o755); err != nil {
			t.Skipf("cannot make a cgroup: %v", err)
		}
	}
	t.Cleanup(func() {
		for _, dir := range []string{"blocked/sub", "blocked", "other", ""} {
			p := filepath.Join(root, base, dir)
			for i := 0; i < 50 && os.Remove(p) != nil; i++ { // its last process may still be exiting
				time.Sleep(100 * time.Millisecond)
			}
		}
	})
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 90*time.Second)
	serveTCP(t, l.Server, 80, 81)
	d := startDaemon(t, l.Client, map[string]string{
		"luafw.yaml": "plugins:\n  - file: cg.lua\n",
		"cg.lua": fmt.Sprintf(`
fw.register{name = "deny", hook = "output", match = {cgroup = %q, proto = "tcp", dport = 80}, fn = function(pkt)
  return fw.DROP
end}
fw.register{name = "see", hook = "output", match = {proto = "tcp", dport = 81}, fn = function(pkt)
  log.info("cgroup seen", {cg = pkt.cgroup or "none"})
end}`, base+"/blocked"),
	})
	// connectIn connects to the server from a shell in the client's
	// namespace that the test places in cgroup dir of its subtree first
	// (`ip netns exec` hides /sys/fs/cgroup from the shell itself).
	connectIn := func(dir string, port int) bool {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		cmd, err := l.Client.Command(cctx, "bash", "-c", fmt.Sprintf(`read go; exec 3<>/dev/tcp/%s/%d && echo connected`, l.Server.Addr4, port))
		if err != nil {
			t.Fatal(err)
		}
		in, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// ip netns exec and the guard exec: the pid is the shell's.
		if err := os.WriteFile(filepath.Join(root, base, dir, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
			t.Fatal(err)
		}
		in.Write([]byte("go\n"))
		cmd.Wait()
		return strings.Contains(out.String(), "connected")
	}
	if connectIn("blocked", 80) {
		t.Errorf("a process in %s/blocked connected to port 80; want its SYNs dropped", base)
	}
	if connectIn("blocked/sub", 80) {
		t.Errorf("a process in %s/blocked/sub (below the matched cgroup) connected; want dropped", base)
	}
	if !connectIn("other", 80) {
		t.Errorf("a process in %s/other did not connect to port 80; only blocked is denied", base)
	}
	if res := connect(ctx, l.Client, l.Server.Addr4, 80, 3*time.Second); res.Outcome != lab.Connected {
		t.Errorf("the test's own connection: %v, want connected", res)
	}
	if !connectIn("other", 81) {
		t.Errorf("port 81 from %s/other did not connect", base)
	}
	d.waitLog("cg="+base+"/other", 5*time.Second)
	ruleset, _ := l.Client.Run(ctx, "nft", "list", "table", "ip", "luafw")
	if !strings.Contains(ruleset, "socket cgroupv2 level 2") {
		t.Errorf("the cgroup is not in the kernel rule:\n%s", ruleset)
	}
	d.stop()
}

package tests

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/luafw/luafw/nfq/queue"
	"github.com/luafw/luafw/tests/lab"
)

// A second luafw run in the namespace of a running one exits at once with
// exit code 4, names the running one, and touches nothing: the first keeps
// its tables, its pidfile and its filtering. --dry-run needs no lock.
func TestSecondInstanceRefused(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 60*time.Second)
	d := startDaemon(t, l.Router, map[string]string{"luafw.yaml": "plugins:\n  - file: drop.lua\n", "drop.lua": drop23})
	serveTCP(t, l.Server, 23)
	before, err := l.Router.Run(ctx, "nft", "-a", "list", "table", "ip", "luafw")
	if err != nil {
		t.Fatal(err)
	}
	pid := d.cmd.Process.Pid

	cmd, err := l.Router.Command(ctx, luafwBinary(t), "run", "--config", d.dir+"/luafw.yaml", "--pidfile", d.pidfile)
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 4 {
		t.Fatalf("second luafw run: %v, want exit code 4:\n%s", err, out)
	}
	if !strings.Contains(string(out), "pid "+strconv.Itoa(pid)) || !strings.Contains(string(out), "net:[") {
		t.Errorf("the refusal does not name the running pid %d and the namespace:\n%s", pid, out)
	}
	after, err := l.Router.Run(ctx, "nft", "-a", "list", "table", "ip", "luafw")
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("the second instance changed the first's tables:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if b, err := os.ReadFile(d.pidfile); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(pid) {
		t.Errorf("the first instance's pidfile: %q %v", b, err)
	}
	if res := connect(ctx, l.Client, l.Server.Addr4, 23, time.Second); res.Outcome != lab.TimedOut {
		t.Errorf("after the second instance: port 23 %v, want still dropped", res)
	}
	if strings.Contains(d.logs.String(), "stopping") {
		t.Errorf("the first instance stopped:\n%s", d.logs.String())
	}

	dry, err := l.Router.Command(ctx, luafwBinary(t), "run", "--dry-run", "--config", d.dir+"/luafw.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := dry.CombinedOutput(); err != nil || !strings.Contains(string(out), "table ip luafw") {
		t.Errorf("--dry-run beside a running instance: %v\n%s", err, out)
	}
	d.stop()
}

// Someone deletes or changes luafw's tables under a running daemon: it
// notices, says so in its log, counts it, and puts them back.
func TestTablesRestoredWhenChangedUnderUs(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 60*time.Second)
	d := startDaemon(t, l.Router, map[string]string{"luafw.yaml": "plugins:\n  - file: drop.lua\n", "drop.lua": drop23},
		"--metrics", "127.0.0.1:0")
	serveTCP(t, l.Server, 23, 80)
	for i, cmd := range []string{
		"nft delete table ip luafw",
		"nft flush ruleset",
		"nft insert rule ip luafw div_forward_1 accept",
	} {
		if _, err := l.Router.Shell(ctx, cmd); err != nil {
			t.Fatal(err)
		}
		waitCountIn(t, d, "tables restored", i+1)
		if res := connect(ctx, l.Client, l.Server.Addr4, 23, time.Second); res.Outcome != lab.TimedOut {
			t.Errorf("after %q: port 23 %v, want dropped again", cmd, res)
		}
		if res := connect(ctx, l.Client, l.Server.Addr4, 80, 2*time.Second); res.Outcome != lab.Connected {
			t.Errorf("after %q: port 80 %v, want connected", cmd, res)
		}
	}
	if !strings.Contains(d.logs.String(), "changed or removed by someone else") {
		t.Error("the log does not say the tables were changed by someone else")
	}
	if v := metricValue(scrape(t, d), "luafw_tables_restored_total"); v != 3 {
		t.Errorf("luafw_tables_restored_total = %v, want 3", v)
	}
	d.stop()
}

// A daemon that cannot bind its queues (another program holds queue 1000)
// exits with an error at once and leaves no tables behind: its background
// goroutines stop with it.
func TestQueueTakenExits(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx := testCtx(t, 60*time.Second)
	var holder *queue.Socket
	if err := l.Router.Do(func() (err error) {
		holder, err = queue.Open(queue.Config{Queues: []uint16{1000}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"luafw.yaml": "plugins:\n  - file: drop.lua\n", "drop.lua": drop23})
	cmd, err := l.Router.Command(ctx, luafwBinary(t), "run", "--config", dir+"/luafw.yaml", "--pidfile", dir+"/luafw.pid")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "queues [1000") {
		t.Fatalf("luafw run with queue 1000 taken: %v after %v, want exit code 1 naming the queue:\n%s", err, time.Since(start), out)
	}
	t.Logf("exited after %v", time.Since(start))
	if left := ourRules(t, ctx, l.Router); left != "" {
		t.Errorf("a failed start left rules:\n%s", left)
	}
}

package tests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/luafw/luafw/replay"
)

// luafw replay as a child process, for the hostile tests: its results,
// how long its replay loop took, its peak RSS and (the ends of) its log.

// replayRun is what one luafw replay did.
type replayRun struct {
	results []replay.Result
	stderr  string        // its first 64 KiB and last 4 KiB
	logSize int64         // of the whole stderr
	failLog bool          // the whole stderr has a "callback failed" line
	wall    time.Duration // the whole process
	loop    time.Duration // the replay loop, from its summary line
	peakKiB int64
}

// runReplay runs luafw replay on dir's luafw.yaml and capture. Its stderr
// goes to a file: a hostile plugin may log a lot.
func runReplay(t *testing.T, bin, dir, capture string) replayRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hostileCaseTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "replay", "--config", filepath.Join(dir, "luafw.yaml"), "--pcap", filepath.Join(dir, capture))
	var stdout bytes.Buffer
	errFile, err := os.Create(filepath.Join(dir, capture+".stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer errFile.Close()
	cmd.Stdout, cmd.Stderr = &stdout, errFile
	start := time.Now()
	err = cmd.Run()
	run := replayRun{wall: time.Since(start)}
	run.stderr, run.logSize = readHeadTail(t, errFile.Name(), 64<<10, 4<<10)
	run.failLog = fileHas(t, errFile.Name(), `msg="callback failed"`)
	if ctx.Err() != nil {
		t.Fatalf("luafw replay did not finish within %v (no budget cut the calls off):\n%s", hostileCaseTimeout, firstLines(run.stderr, 20))
	}
	if err != nil {
		t.Fatalf("luafw replay: %v\n%s", err, firstLines(run.stderr, 20))
	}
	if run.peakKiB, err = peakRSS(cmd.ProcessState); err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`errors, (\S+) \(`).FindStringSubmatch(run.stderr)
	if m == nil {
		t.Fatalf("no summary line from luafw replay:\n%s", firstLines(run.stderr, 20))
	}
	if run.loop, err = time.ParseDuration(m[1]); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var r replay.Result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("replay line %q: %v", sc.Text(), err)
		}
		run.results = append(run.results, r)
	}
	return run
}

// readHeadTail reads a file's first head bytes and its last tail bytes
// (the summary line is last; a hostile plugin may log megabytes before it).
func readHeadTail(t *testing.T, path string, head, tail int64) (string, int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() <= head+tail {
		b, err := io.ReadAll(f)
		if err != nil {
			t.Fatal(err)
		}
		return string(b), fi.Size()
	}
	h, tl := make([]byte, head), make([]byte, tail)
	if _, err := f.ReadAt(h, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadAt(tl, fi.Size()-tail); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s\n[... %d bytes ...]\n%s", h, fi.Size()-head-tail, tl), fi.Size()
}

// fileHas reports whether a line of the file at path contains s: the
// failure of a callback may come after megabytes of its log lines.
func fileHas(t *testing.T, path, s string) bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<16)
	for {
		line, err := r.ReadSlice('\n')
		if strings.Contains(string(line), s) {
			return true
		}
		if err == io.EOF {
			return false
		}
		if err != nil && err != bufio.ErrBufferFull {
			t.Fatal(err)
		}
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = append(lines[:n], "...")
	}
	for i, l := range lines {
		if len(l) > 300 {
			lines[i] = l[:300] + "..."
		}
	}
	return strings.Join(lines, "\n")
}

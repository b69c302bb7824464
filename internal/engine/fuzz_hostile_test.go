package engine

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// FuzzHostileLoad proves the class of issue 18: no plugin file and no
// packet can end the process. Each input is made into a generated hostile
// chunk (deep nesting of each kind, huge literals, sparse tables through
// every table and string function, big unpack/concat/rep/format), which a
// CHILD process (this test binary, re-executed with LUAFW_FUZZ_CHUNK)
// loads into an engine with a memory ceiling and runs one packet through.
// The child must end normally -- a load error is fine, a Go fatal error, a
// panic or a crash is not -- within the load budget plus slack, and keep
// its peak RSS under a bound. The seeds run in plain `go test` (CI).
func FuzzHostileLoad(f *testing.F) {
	if path := os.Getenv("LUAFW_FUZZ_CHUNK"); path != "" {
		fuzzChild(f, path)
		f.Skip("child")
	}
	for _, s := range fuzzSeeds {
		f.Add(s.kind, s.n, s.arg)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, kind uint8, n uint32, arg string) {
		src := hostileChunk(kind, n, arg)
		path := filepath.Join(dir, "chunk.lua")
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^FuzzHostileLoad$", "-test.fuzz=", "-test.count=1")
		cmd.Env = append(os.Environ(), "LUAFW_FUZZ_CHUNK="+path, "GOTRACEBACK=single")
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		t0 := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		timer := time.AfterFunc(fuzzKill, func() { cmd.Process.Kill() })
		err := cmd.Wait()
		timer.Stop()
		took := time.Since(t0)
		res := out.String()
		what := fmt.Sprintf("kind %d (%s) n %d arg %.40q", kind, fuzzKinds[int(kind&0x7f)%len(fuzzKinds)], n, arg)
		if err != nil || strings.Contains(res, "fatal error") || strings.Contains(res, "panic:") {
			t.Fatalf("%s: the child died (%v) after %v:\n%.3000s", what, err, took, res)
		}
		if !strings.Contains(res, "FUZZRESULT:") {
			t.Fatalf("%s: no result:\n%.3000s", what, res)
		}
		if took > loadBudget+fuzzSlack {
			t.Errorf("%s: ran %v, want under %v", what, took, loadBudget+fuzzSlack)
		}
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && ru.Maxrss<<10 > fuzzMaxRSS {
			t.Errorf("%s: peak RSS %d MiB, want under %d MiB", what, ru.Maxrss>>10, fuzzMaxRSS>>20)
		}
		i := strings.Index(res, "FUZZRESULT:")
		t.Logf("%s: %v: %.200s", what, took.Round(time.Millisecond), strings.SplitN(res[i:], "\n", 2)[0])
	})
}

const (
	fuzzSlack        = 3 * time.Second
	fuzzKill         = 20 * time.Second
	fuzzMemoryLimit  = 512 << 20 // the child engine's ceiling
	fuzzMaxRSS       = 1536 << 20
	fuzzMaxNesting   = 1 << 20
	fuzzMaxLiteral   = MaxPluginFileSize + 16
	fuzzMaxTableSize = 1 << 40
)

// fuzzChild loads the chunk at path and runs one packet through it,
// printing what happened. Errors are results; only the process dying is a
// failure, which the parent sees.
func fuzzChild(f *testing.F, path string) {
	e := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MemoryLimit: fuzzMemoryLimit})
	defer e.Close()
	if err := e.Load([]PluginSpec{{File: path, Budget: 20 * time.Millisecond}}); err != nil {
		fmt.Printf("FUZZRESULT: load: %.300s\n", err)
		return
	}
	d := e.Process(&Packet{Hook: Input, Data: tcpPkt(f, "10.1.1.1", "10.0.0.2", 1234, 80, 0x02)})
	fmt.Printf("FUZZRESULT: loaded; verdict %v, %d errors\n", d.Verdict, d.Errors)
}

// fuzzKinds name the generators of hostileChunk.
var fuzzKinds = []string{
	"nest-table", "nest-paren", "nest-call", "nest-if", "nest-do", "nest-function",
	"nest-unary", "chain-concat", "chain-pow", "chain-index", "chain-plus",
	"long-string", "long-bracket", "long-constructor", "many-constants",
	"table-fn-sparse", "string-fn-big", "big-unpack", "raw",
}

// tableCalls and stringCalls are what the sparse-table and big-string
// kinds run; N is the size, s a string of 1 MiB, t a sparse table whose
// border is near N.
var tableCalls = []string{
	"table.sort(t)", "table.sort(t, function(a, b) return a < b end)", "table.concat(t)",
	"table.concat(t, ',', 1, N)", "table.insert(t, 1, 0)", "table.insert(t, 1)", "table.remove(t, 1)",
	"table.remove(t)", "table.getn(t)", "table.maxn(t)", "unpack(t)", "unpack(t, 1, N)",
	"table.foreach(t, function() end)", "table.foreachi(t, function() end)", "#t", "ipairs(t)",
	"for i = 1, #t do local _ = t[i] end", "select('#', unpack(t, 1, N))",
}

var stringCalls = []string{
	"string.rep(s, N)", "string.rep('x', N, ',')", "s:rep(64)", "string.format('%' .. N .. 'd', 1)",
	"string.format(string.rep('%s', 200), unpack(big))", "string.format('%q', s)", "s:upper()", "s:lower()",
	"s:reverse()", "s:byte(1, N)", "string.char(s:byte(1, N))", "s:sub(2, -2)", "s:find(string.rep('a*', 30) .. 'b')",
	"s:gsub('.', '%0%0')", "s:gsub('', s)", "s:match(string.rep('(.)', 32))", "s .. s .. s .. s",
	"table.concat(big, s)", "tostring(N):rep(N)", "s:gmatch('.')()", "string.len(s:rep(2^20))",
}

// hostileChunk builds a chunk of kind, sized by n, with arg as the raw
// chunk (kind "raw") or mixed in.
func hostileChunk(kind uint8, n uint32, arg string) string {
	topLevel := kind&0x80 != 0 // the op runs at the top level (load budget) too
	k := fuzzKinds[int(kind&0x7f)%len(fuzzKinds)]
	nest := int(n % fuzzMaxNesting)
	rep := func(s string, k int) string { return strings.Repeat(s, k) }
	switch k {
	case "nest-table":
		return "x = " + rep("{", nest) + rep("}", nest)
	case "nest-paren":
		return "x = " + rep("(", nest) + "1" + rep(")", nest)
	case "nest-call":
		return "local function f(a) return a end x = " + rep("f(", nest) + "1" + rep(")", nest)
	case "nest-if":
		return rep("if x then ", nest) + rep("end ", nest)
	case "nest-do":
		return rep("do ", nest) + rep("end ", nest)
	case "nest-function":
		return "x = " + rep("function() return ", nest) + "1" + rep(" end", nest)
	case "nest-unary":
		return "x = " + rep("- not #", nest/3+1) + "1"
	case "chain-concat":
		return "x = " + rep("'a' .. ", nest) + "'a'"
	case "chain-pow":
		return "x = " + rep("2 ^ ", nest) + "2"
	case "chain-index":
		return "x = a" + rep(".b", nest)
	case "chain-plus":
		return "x = 1" + rep(" + 1", nest)
	case "long-string":
		return "x = '" + rep("a", int(n%fuzzMaxLiteral)) + "'"
	case "long-bracket":
		return "x = [==[" + rep("]]", int(n%fuzzMaxLiteral)/2) + "]==]"
	case "long-constructor":
		return "x = {" + rep("1,", int(n%fuzzMaxLiteral)/2) + "}"
	case "many-constants":
		var b strings.Builder
		for i := 0; b.Len()+16 < int(n%fuzzMaxLiteral); i++ {
			fmt.Fprintf(&b, "a=%d\n", i)
		}
		return b.String()
	case "table-fn-sparse", "string-fn-big", "big-unpack":
		var op string
		switch k {
		case "table-fn-sparse":
			op = tableCalls[int(n)%len(tableCalls)]
		case "string-fn-big":
			op = stringCalls[int(n)%len(stringCalls)]
		default:
			op = []string{"unpack({}, 1, N)", "unpack({}, -N, N)", "string.char(unpack({}, 1, N))",
				"select(N, unpack(big))", "math.max(unpack({}, 1, N))", "{unpack({}, 1, N)}"}[int(n)%6]
		}
		if arg != "" {
			op = arg // the fuzzer's own expression over the same names
		}
		size := fuzzMaxTableSize/2 + uint64(n)*2654435761%(fuzzMaxTableSize/2) // far above any array part
		body := fmt.Sprintf(`local N = %d
local s = string.rep("a", 2^20)
local big = {} for i = 1, 1000 do big[i] = s end
local function op(pkt)
	local t = {1, 2, 3}
	t[N] = 1 t[N - 1] = 2 t[math.floor(N / 2)] = 3
	for k = 2, 40 do t[2 ^ k] = k end -- the length search doubles up to a huge border
	local x = %s
	return fw.DROP
end
`, size, op)
		if topLevel {
			body += "pcall(op)\n"
		}
		return body + `fw.register{hook = "input", fn = op}` + "\n"
	default: // raw
		return arg
	}
}

// fuzzSeeds run in plain `go test`: each kind at its worst legal and
// refused sizes. Keep them quick: together under ~20 s.
var fuzzSeeds = []struct {
	kind uint8
	n    uint32
	arg  string
}{
	{0, 1_000_000, ""},   // nest-table, a million deep
	{1, 1_000_000, ""},   // nest-paren
	{2, 1_000_000, ""},   // nest-call
	{3, 100_000, ""},     // nest-if
	{4, 196, ""},         // nest-do, legal
	{5, 1_000_000, ""},   // nest-function
	{6, 1_000_000, ""},   // nest-unary
	{7, 1_000_000, ""},   // chain-concat
	{8, 500_000, ""},     // chain-pow
	{9, 1_000_000, ""},   // chain-index
	{10, 1_000_000, ""},  // chain-plus
	{11, 4 << 20, ""},    // long-string at the file limit (refused: larger)
	{11, 4<<20 - 16, ""}, // long-string just under it
	{13, 4<<20 - 8, ""},  // long-constructor just under the limit
	{14, 4<<20 - 1, ""},  // many-constants, 4 MiB of them
	{15, 0, ""},          // table.sort on a sparse table, callback
	{15 | 0x80, 0, ""},   // the same at the top level
	{15, 2, ""},          // table.concat
	{15, 10, ""},         // unpack(t)
	{16, 0, ""},          // string.rep(s, N)
	{16, 3, ""},          // format with a huge width
	{16, 12, ""},         // catastrophic pattern on 1 MiB
	{16, 14, ""},         // gsub('', s)
	{17, 0, ""},          // unpack({}, 1, N)
	{17, 2, ""},          // string.char(unpack(...))
	{18, 0, "x = " + strings.Repeat("{", 300) + strings.Repeat("}", 300)},
}

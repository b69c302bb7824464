package sandbox

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
	"unsafe"

	lua "github.com/luafw/luafw/lua"
)

// Hostile calls of the table and string builtins: sparse tables whose
// border lies far beyond what they hold, and strings larger than any
// builtin may build. Each must be refused or cut by the budget, never end
// the process: a Go fatal error (out of memory from one huge make) cannot
// be recovered, so every case runs in a child process (this test binary,
// re-run with hostileEnv set) and a crash fails the case, not the run.

const hostileEnv = "LUAFW_SANDBOX_HOSTILE_CASE"

// hostileBudget is the time budget of the hostile call; hostileSlack what
// a noisy shared machine may add before the child notices.
const (
	hostileBudget = 100 * time.Millisecond * raceSlowdown
	hostileSlack  = 400 * time.Millisecond * raceSlowdown
	// honestBudget is the budget of a case whose answer is a value or a
	// refusal rather than a cut: long, so that a child descheduled on a
	// busy machine (the cases run in parallel) still gives its answer. How
	// quickly a cut lands is checked on the cases that expect one.
	honestBudget = 10 * time.Second * raceSlowdown
)

// budgetOf is a case's budget: hostileBudget when the case expects to be
// cut off, honestBudget otherwise.
func budgetOf(want string) time.Duration {
	if strings.Contains(want, "interrupted") {
		return hostileBudget
	}
	return honestBudget
}

// sparseSetup builds t: 1..65535 in the array part, then keys 2^16, 2^17,
// ..., 2^52 in the hash part, so its border (Lua 5.1's unbound search) is
// 2^52 while it holds 65,572 values; u likewise to 2^34 (a copy of 2^34
// values is 256 GiB: before the fix, a fatal error rather than makeslice's
// recoverable "len out of range"). big is a 64 MiB string, built by
// `..`, which no builtin may produce (they stop at 1 MiB).
const sparseSetup = `
t = {}
for i = 1, 65535 do t[i] = i end
local k = 65536
while k <= 2^52 do t[k] = k k = k * 2 end
u = {}
for i = 1, 65535 do u[i] = i end
k = 65536
while k <= 2^34 do u[k] = k k = k * 2 end
big = string.rep("a", 2^20)
for i = 1, 6 do big = big .. big end
mib = string.rep("aB\200", 349525)
`

var hostileCases = []struct {
	name, code string
	want       string // regexp the result (value or error) must match
}{
	{"len-operator", `return #t`, `^65535$`},
	{"getn", `return table.getn(t)`, `^4503599627370496$`},
	{"maxn", `return table.maxn(t)`, `^4503599627370496$`},
	{"ipairs", `local n = 0 for _ in ipairs(t) do n = n + 1 end return n`, `^65536$`},
	{"sort", `table.sort(t)`, `attempt to compare`},
	{"sort-2^34", `table.sort(u)`, `attempt to compare`},
	{"sort-2^34-comparator", `table.sort(u, function(a, b) return (a or 0) < (b or 0) end)`, `interrupted|deadline`},
	{"sort-comparator", `table.sort(t, function(a, b) return (a or 0) < (b or 0) end)`, `interrupted|deadline`},
	{"sort-small-sparse", `local u = {3, 1, 2} u[2^40] = 0 table.sort(u) return u[1] .. u[2] .. u[3] .. u[2^40]`, `^1230$`},
	{"concat", `return table.concat(t, ",")`, `invalid value \(at index 65537\) in table for 'concat'`},
	{"concat-top", `return table.concat(t, ",", 2^52 - 2)`, `invalid value \(at index 4503599627370494\)`},
	{"unpack", `return select("#", unpack(t))`, `too many results to unpack`},
	{"unpack-range", `return select("#", unpack(t, -2^62, 2^62))`, `too many results to unpack`},
	{"insert-huge-index", `table.insert(t, 2^52 + 1, 7) return t[2^52 + 1]`, `^7$`},
	{"insert-front", `table.insert(t, 1, 0)`, `interrupted|deadline`},
	{"insert-negative", `table.insert({}, -2^52, 1)`, `interrupted|deadline`},
	{"remove-front", `table.remove(t, 1)`, `interrupted|deadline`},
	{"upper-big", `return #big:upper()`, `string\.upper: result of 67108864 bytes exceeds the sandbox limit of 1048576 bytes`},
	{"lower-big", `return #big:lower()`, `string\.lower: result of 67108864 bytes exceeds`},
	{"reverse-big", `return #big:reverse()`, `string\.reverse: result of 67108864 bytes exceeds`},
	{"upper-mib", `local u = mib:upper() return #u .. u:sub(1, 2) .. u:byte(3)`, `^1048575AB200$`},
	{"lower-mib", `local u = mib:lower() return #u .. u:sub(1, 2) .. u:byte(3)`, `^1048575ab200$`},
	{"reverse-mib", `local u = mib:reverse() return #u .. u:byte(1) .. u:sub(2, 3)`, `^1048575200Ba$`},
	{"sub-big", `return #big:sub(2, -2)`, `^67108862$`},
	{"rep-big", `return #string.rep(big, 2)`, `exceeds the sandbox limit`},
	{"gsub-big", `return #big:gsub("a", "b")`, `exceeds the sandbox limit|interrupted|deadline`},
	{"format-big", `return #string.format("%s", big)`, `exceeds|too long|limit`},
	{"find-big", `return big:find("b")`, `^nil$|interrupted|deadline`},
}

// runHostileChild is the child's half: it runs one case and prints its
// result and how long the hostile call took.
func runHostileChild(name string) {
	for _, c := range hostileCases {
		if c.name != name {
			continue
		}
		L := NewState()
		if err := L.DoString(sparseSetup); err != nil {
			fmt.Printf("SETUP: %v\n", err)
			os.Exit(3)
		}
		ctx, cancel := context.WithTimeout(context.Background(), budgetOf(c.want))
		L.SetContext(ctx)
		start := time.Now()
		err := L.DoString(c.code)
		elapsed := time.Since(start)
		cancel()
		res := ""
		if err != nil {
			res = "error: " + ErrorText(err)
		} else if L.GetTop() > 0 {
			res = L.ToStringMeta(L.Get(-1)).String()
		}
		fmt.Printf("ELAPSED %d\nRESULT %s\n", elapsed.Milliseconds(), res)
		os.Exit(0)
	}
	fmt.Printf("no case %q\n", name)
	os.Exit(3)
}

func TestHostileBuiltins(t *testing.T) {
	if name := os.Getenv(hostileEnv); name != "" {
		runHostileChild(name)
	}
	for _, c := range hostileCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestHostileBuiltins$", "-test.count=1")
			cmd.Env = append(os.Environ(), hostileEnv+"="+c.name, "GOMEMLIMIT=1GiB")
			out, err := cmd.CombinedOutput()
			if err != nil || strings.Contains(string(out), "fatal error") {
				t.Fatalf("child: %v\n%.2000s", err, out)
			}
			var ms int
			var res string
			for _, line := range strings.Split(string(out), "\n") {
				if v, ok := strings.CutPrefix(line, "ELAPSED "); ok {
					fmt.Sscan(v, &ms)
				}
				if v, ok := strings.CutPrefix(line, "RESULT "); ok {
					res = v
				}
			}
			if !regexp.MustCompile(c.want).MatchString(res) {
				t.Errorf("%s: %q, want %s", c.code, res, c.want)
			}
			if d, b := time.Duration(ms)*time.Millisecond, budgetOf(c.want); d > b+hostileSlack {
				t.Errorf("%s: took %v at a %v budget", c.code, d, b)
			}
			t.Logf("%s -> %.80q in %d ms", c.name, res, ms)
		})
	}
}

// TestPiecesDoNotPin: a piece small beside its source is a copy; a large
// piece shares the source.
func TestPiecesDoNotPin(t *testing.T) {
	L := NewState()
	defer L.Close()
	src := strings.Repeat("xy", 1<<19)
	L.SetGlobal("S", lua.LString(src))
	lo := uintptr(unsafe.Pointer(unsafe.StringData(src)))
	hi := lo + uintptr(len(src))
	for expr, pins := range map[string]bool{
		`S:sub(1, 1)`:               false,
		`S:sub(-10)`:                false,
		`S:sub(2)`:                  true,
		`S:sub(1, 600000)`:          true,
		`S:match("^(xy)")`:          false,
		`S:match("^x")`:             false,
		`select(3, S:find("(yx)"))`: false,
		`S:gmatch("y")()`:           false,
		`S:match("^(.*)y$")`:        true,
		`(function() local c S:gsub("^(xyx)", function(x) c = x end) return c end)()`:                                  false,
		`(function() local c S:gsub("^(xyx)", setmetatable({}, {__index = function(_, x) c = x end})) return c end)()`: false,
	} {
		if err := L.DoString("R = " + expr); err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		r, ok := L.GetGlobal("R").(lua.LString)
		if !ok || len(r) == 0 {
			t.Fatalf("%s: %v", expr, L.GetGlobal("R"))
		}
		p := uintptr(unsafe.Pointer(unsafe.StringData(string(r))))
		if got := p >= lo && p < hi; got != pins {
			t.Errorf("%s (%d bytes): shares the source: %v, want %v", expr, len(r), got, pins)
		}
	}
}

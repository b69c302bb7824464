package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/luafw/luafw/config"
)

// TestHelpOnStdout: luafw --help, luafw help CMD and every command's --help
// and -h print on stdout, nothing on stderr, and exit 0 (luafw --help |
// less shows it).
func TestHelpOnStdout(t *testing.T) {
	cases := [][]string{{"--help"}, {"-h"}, {"help"}, {"-help"}}
	for _, c := range commandTable() {
		cases = append(cases, []string{c.name, "--help"}, []string{c.name, "-h"}, []string{"help", c.name})
	}
	cases = append(cases, []string{"state", "show", "--help"}, []string{"trace", "--port", "22", "-h"})
	for _, args := range cases {
		code, out, errs := runCLI(args...)
		if code != exitOK || errs != "" || !strings.Contains(out, "Usage:") {
			t.Errorf("luafw %s: exit %d, stderr %q, stdout:\n%s", strings.Join(args, " "), code, errs, out)
		}
	}
	// A command's help lists each of its flags with its placeholder.
	_, out, _ := runCLI("run", "--help")
	for _, want := range []string{"Usage: luafw run --config FILE [flags]", "--config FILE", "--socket PATH", "--pidfile FILE", "--metrics ADDR", "--dry-run\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("run --help lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "-socket luafw") || strings.Contains(out, "`") {
		t.Errorf("run --help shows a quoted word as a placeholder:\n%s", out)
	}
}

// TestUsageErrors: each usage mistake is named on stderr, with nothing on
// stdout, and exits 2.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // the first line of stderr
	}{
		{nil, "luafw: no command given"},
		{[]string{"x.yaml"}, `luafw: unexpected argument "x.yaml" (did you mean luafw run --config x.yaml, or luafw check x.yaml?)`},
		{[]string{"policy.lua"}, `luafw: unexpected argument "policy.lua" (did you mean luafw check policy.lua?)`},
		{[]string{"--config", "x.yaml"}, `luafw: unknown flag "--config" before the command (flags follow it: luafw COMMAND --config)`},
		{[]string{"frobnicate"}, `luafw: unknown command "frobnicate"`},
		{[]string{"help", "frobnicate"}, `luafw: unknown command "frobnicate"`},
		{[]string{"run", "x.yaml"}, `luafw run: unexpected argument "x.yaml" (did you mean --config x.yaml?)`},
		{[]string{"run"}, "luafw run: missing --config FILE"},
		{[]string{"run", "--config"}, "luafw run: flag needs an argument: -config"},
		{[]string{"top", "--interval", "50ms"}, "luafw top: --interval 50ms is below the minimum 100ms"},
		{[]string{"top", "--interval", "fast"}, `luafw top: invalid value "fast" for flag -interval: parse error`},
		{[]string{"state", "bogus"}, `luafw state: unknown subcommand "bogus" (want list|show|get|set|delete|flush)`},
		{[]string{"state"}, "luafw state: missing subcommand (want list|show|get|set|delete|flush)"},
		{[]string{"state", "get", "bans"}, "luafw state get: missing KEY"},
		{[]string{"state", "list", "extra"}, `luafw state list: unexpected argument "extra"`},
		{[]string{"trace", "--bogus"}, "luafw trace: flag provided but not defined: -bogus"},
		{[]string{"trace", "--port", "0"}, `luafw trace: invalid value "0" for flag -port: bad port "0" (want 1-65535)`},
		{[]string{"trace", "-n", "0"}, "luafw trace: -n 0: want a positive number of packets"},
		{[]string{"check"}, "luafw check: missing FILE.lua or CONFIG.yaml"},
		{[]string{"check", "a.lua", "b.lua"}, `luafw check: unexpected argument "b.lua"`},
		{[]string{"replay", "--config", "a.yaml"}, "luafw replay: missing --pcap FILE"},
		{[]string{"reload", "now"}, `luafw reload: unexpected argument "now"`},
		{[]string{"status", "--jsn"}, "luafw status: flag provided but not defined: -jsn"},
		{[]string{"version", "1"}, `luafw version: unexpected argument "1"`},
		{[]string{"completion"}, "luafw completion: missing shell (bash, zsh or fish)"},
		{[]string{"completion", "tcsh"}, `luafw completion: unknown shell "tcsh" (want bash, zsh or fish)`},
		{[]string{"man"}, "luafw man: missing --dir DIR"},
	} {
		code, out, errs := runCLI(tc.args...)
		first, _, _ := strings.Cut(errs, "\n")
		if code != exitUsage || out != "" || first != tc.want {
			t.Errorf("luafw %s: exit %d, stdout %q, stderr:\n%s\nwant exit 2 and first line %q", strings.Join(tc.args, " "), code, out, errs, tc.want)
		}
		if strings.Count(errs, first) != 1 {
			t.Errorf("luafw %s: the error is printed more than once:\n%s", strings.Join(tc.args, " "), errs)
		}
	}
}

// TestStateShowBucket: state show on a bucket family shows it; the
// commands that need a map say what the name is instead.
func TestStateShowBucket(t *testing.T) {
	sock, st := stateDaemon(t)
	b, err := st.Bucket("ssh", 0.5, 5)
	if err != nil {
		t.Fatal(err)
	}
	b.Take("10.0.0.1")
	st.Counter("drops").Add(2)
	code, out, errs := runCLI("state", "show", "ssh", "--socket", sock)
	if code != 0 || out != "bucket ssh: rate 0.5/s, burst 5, 1 keys below full (a key's tokens refill by themselves)\n" {
		t.Errorf("show bucket: exit %d %q %q", code, out, errs)
	}
	code, _, errs = runCLI("state", "get", "ssh", "10.0.0.1", "--socket", sock)
	if code != 1 || !strings.Contains(errs, `"ssh" is a token bucket family, not a map`) {
		t.Errorf("get on a bucket: exit %d %q", code, errs)
	}
	code, _, errs = runCLI("state", "flush", "drops", "--socket", sock)
	if code != 1 || !strings.Contains(errs, `"drops" is a counter, not a map`) {
		t.Errorf("flush on a counter: exit %d %q", code, errs)
	}
	code, _, errs = runCLI("state", "set", "ssh", "k", "1", "--socket", sock)
	if _, isMap := st.LookupMap("ssh"); code != 1 || isMap || !strings.Contains(errs, "not a map") {
		t.Errorf("set on a bucket: exit %d %q (a map made: %v)", code, errs, isMap)
	}
}

// TestManPages: luafw man writes both pages; luafw.8 names every command,
// subcommand, flag and exit code, luafw.yaml.5 every configuration key;
// mandoc (when installed) finds nothing wrong with either.
func TestManPages(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1765000000")
	dir := filepath.Join(t.TempDir(), "man")
	if code, out, errs := runCLI("man", "--dir", dir); code != 0 || out != "" || errs != "" {
		t.Fatalf("luafw man: exit %d %q %q", code, out, errs)
	}
	page8, err := os.ReadFile(filepath.Join(dir, "luafw.8"))
	if err != nil {
		t.Fatal(err)
	}
	page5, err := os.ReadFile(filepath.Join(dir, "luafw.yaml.5"))
	if err != nil {
		t.Fatal(err)
	}
	man8 := strings.ReplaceAll(string(page8), `\-`, "-")
	for _, c := range commandTable() {
		if !strings.Contains(man8, ".SS \"luafw "+c.name+" ") && !strings.Contains(man8, ".SS \"luafw "+c.name+"\"") {
			t.Errorf("luafw.8 has no section for %s", c.name)
		}
		for _, s := range c.subs {
			if !strings.Contains(man8, ".B "+strings.TrimSpace(s.name+" "+s.args)+"\n") {
				t.Errorf("luafw.8 lacks %s %s", c.name, s.name)
			}
		}
		for _, f := range c.flags() {
			if !strings.Contains(man8, ".B "+flagName(f)+"\n") && !strings.Contains(man8, ".B "+flagName(f)+" ") {
				t.Errorf("luafw.8 lacks %s %s", c.name, flagName(f))
			}
		}
	}
	for _, e := range exitCodes() {
		if !regexp.MustCompile(`(?m)^\.B ` + strconv.Itoa(e.code) + `$`).MatchString(man8) {
			t.Errorf("luafw.8 lacks exit code %d", e.code)
		}
	}
	man5 := strings.ReplaceAll(string(page5), `\-`, "-")
	for _, k := range config.Keys() {
		if !strings.Contains(man5, ".B "+k.Path+"\n") {
			t.Errorf("luafw.yaml.5 lacks the key %s", k.Path)
		}
	}
	if _, err := exec.LookPath("mandoc"); err != nil {
		t.Log("mandoc not installed: the pages' roff is not linted")
		return
	}
	out, err := exec.Command("mandoc", "-T", "lint", "-W", "style", filepath.Join(dir, "luafw.8"), filepath.Join(dir, "luafw.yaml.5")).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("mandoc -T lint: %v\n%s", err, out)
	}
}

// completionScript returns luafw completion SHELL's output.
func completionScript(t *testing.T, shell string) string {
	t.Helper()
	code, out, errs := runCLI("completion", shell)
	if code != 0 || errs != "" {
		t.Fatalf("completion %s: exit %d %q", shell, code, errs)
	}
	return out
}

// TestCompletions: each shell's script names every command, subcommand and
// flag, and its shell accepts it (zsh and fish when installed).
func TestCompletions(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		script := completionScript(t, shell)
		for _, c := range commandTable() {
			if !strings.Contains(script, c.name) {
				t.Errorf("%s completion lacks the command %s", shell, c.name)
			}
			for _, s := range c.subs {
				if !strings.Contains(script, s.name) {
					t.Errorf("%s completion lacks %s %s", shell, c.name, s.name)
				}
			}
			for _, f := range c.flags() {
				spelled := flagName(f)
				if shell == "fish" {
					spelled = "-l " + f.Name
					if len(f.Name) == 1 {
						spelled = "-o " + f.Name
					}
				}
				if !strings.Contains(script, spelled) {
					t.Errorf("%s completion lacks %s %s", shell, c.name, spelled)
				}
			}
		}
		path := filepath.Join(t.TempDir(), "luafw."+shell)
		if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := exec.LookPath(shell); err != nil {
			if shell == "bash" {
				t.Fatal("bash is not installed")
			}
			t.Logf("%s not installed: its script's syntax is not checked", shell)
			continue
		}
		if out, err := exec.Command(shell, "-n", path).CombinedOutput(); err != nil {
			t.Errorf("%s -n rejects the completion script: %v\n%s", shell, err, out)
		}
	}
}

// TestBashCompletes runs the bash completion function on command lines and
// checks what it offers.
func TestBashCompletes(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed")
	}
	script := filepath.Join(t.TempDir(), "luafw.bash")
	if err := os.WriteFile(script, []byte(completionScript(t, "bash")), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		line string // words; the last is the one completed
		want string // COMPREPLY, space-separated and sorted by compgen
	}{
		{"luafw re", "reload replay"},
		{"luafw state ", "list show get set delete flush"},
		{"luafw state --socket /x s", "show set"},
		{"luafw state show ", ""},
		{"luafw replay --path ", "forward in out"},
		{"luafw trace --hook f", "forward"},
		{"luafw run --log-format ", "text json"},
		{"luafw top --in", "--interval"},
		{"luafw completion ", "bash zsh fish"},
		{"luafw help st", "status state"},
		{"luafw run --metrics ", ""},
	} {
		words := strings.Split(tc.line, " ")
		quoted := make([]string, len(words))
		for i, w := range words {
			quoted[i] = "'" + w + "'"
		}
		prog := "source " + script + "; COMP_WORDS=(" + strings.Join(quoted, " ") + "); COMP_CWORD=" +
			strconv.Itoa(len(words)-1) + `; _luafw; echo "${COMPREPLY[*]}"`
		out, err := exec.Command("bash", "--norc", "--noprofile", "-c", prog).CombinedOutput()
		if err != nil {
			t.Fatalf("%q: %v\n%s", tc.line, err, out)
		}
		if got := strings.TrimSpace(string(out)); got != tc.want {
			t.Errorf("completing %q: %q, want %q", tc.line, got, tc.want)
		}
	}
}

// TestExitCodeTables: README.md and docs/operating.md carry the exit code
// table of the code, word for word.
func TestExitCodeTables(t *testing.T) {
	want := exitTableMarkdown()
	for _, doc := range []string{"../../README.md", "../../docs/operating.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		i := strings.Index(s, "| exit code | meaning |\n")
		if i < 0 {
			t.Errorf("%s has no exit code table (| exit code | meaning |)", doc)
			continue
		}
		table := s[i:]
		if end := strings.Index(table, "\n\n"); end >= 0 {
			table = table[:end+1]
		}
		if table != want {
			t.Errorf("%s's exit code table differs from the code's; want:\n%s\nhave:\n%s", doc, want, table)
		}
	}
}

// TestFlagPlaceholders: every flag that takes a value names it in
// `backquotes` or by its type, never by a quoted word of its usage.
func TestFlagPlaceholders(t *testing.T) {
	for _, c := range commandTable() {
		for _, f := range c.flags() {
			ph := placeholder(f)
			if ph != "" && strings.ToUpper(ph) != ph {
				t.Errorf("%s %s: placeholder %q is not a NAME", c.name, flagName(f), ph)
			}
		}
	}
}

// TestFishCompletes asks fish (when installed) what it completes with the
// script loaded.
func TestFishCompletes(t *testing.T) {
	if _, err := exec.LookPath("fish"); err != nil {
		t.Skip("fish is not installed")
	}
	script := filepath.Join(t.TempDir(), "luafw.fish")
	if err := os.WriteFile(script, []byte(completionScript(t, "fish")), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		line string
		want []string // the completions, without their descriptions
	}{
		{"luafw replay --path ", []string{"forward", "in", "out"}},
		{"luafw state ", []string{"delete", "flush", "get", "list", "set", "show"}},
		{"luafw st", []string{"state", "status"}},
		{"luafw top --i", []string{"--interval"}},
		{"luafw completion ", []string{"bash", "fish", "zsh"}},
	} {
		out, err := exec.Command("fish", "--no-config", "-c", "source "+script+"; complete -C '"+tc.line+"'").CombinedOutput()
		if err != nil {
			t.Fatalf("%q: %v\n%s", tc.line, err, out)
		}
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			word, _, _ := strings.Cut(l, "\t")
			got = append(got, word)
		}
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("completing %q: %q, want %q", tc.line, got, tc.want)
		}
	}
}

package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/luafw/luafw/daemon"
)

const stateUsage = `usage:
  luafw state list [--json]                          maps, counters and buckets of the running daemon
  luafw state show NAME [--json] [--limit N]         a map's entries (or a counter's value)
  luafw state get NAME KEY [--json]                  one entry
  luafw state set NAME KEY VALUE [--ttl D] [--string]  set a key (VALUE: number, true/false, else text;
                                                     put -- before a VALUE such as -5)
  luafw state delete NAME KEY                        delete a key (lift a ban)
  luafw state flush NAME                             delete every key of a map
flags: --socket PATH, --timeout D, --scope local|cluster (when a name exists in both)
Changes to a cluster map (scope cluster) act on every node of the fleet.
`

// cmdState is `luafw state`: the running daemon's shared state.
func cmdState(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, stateUsage)
		return exitUsage
	}
	sub := args[0]
	fs := flag.NewFlagSet("state "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket, timeout := controlFlags(fs)
	asJSON := fs.Bool("json", false, "print the daemon's answer as JSON")
	limit := fs.Int("limit", 0, "show: at most this many entries (0: all)")
	ttl := fs.Duration("ttl", 0, "set: the key expires after this long (0: never)")
	asString := fs.Bool("string", false, "set: store VALUE as text even if it reads as a number or boolean")
	scope := fs.String("scope", "", "local or cluster: which scope's NAME (needed only when both have one)")
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		fmt.Fprint(stderr, stateUsage)
		return exitUsage
	}
	want := map[string]int{"list": 0, "show": 1, "get": 2, "set": 3, "delete": 2, "flush": 1}
	n, ok := want[sub]
	if !ok || len(pos) != n {
		fmt.Fprint(stderr, stateUsage)
		return exitUsage
	}
	a := daemon.StateArgs{Limit: *limit, Scope: *scope}
	if n >= 1 {
		a.Name = pos[0]
	}
	if n >= 2 {
		a.Key = pos[1]
	}
	if sub == "set" {
		a.Value, a.TTL = parseValue(pos[2], *asString), ttl.Seconds()
	}
	var raw json.RawMessage
	if code := callDaemonArgs(ctx, "state."+sub, *socket, *timeout, a, &raw, stderr); code != exitOK {
		return code
	}
	if *asJSON {
		fmt.Fprintln(stdout, string(raw))
		return exitOK
	}
	return printState(stdout, stderr, sub, raw)
}

// parseInterspersed parses flags that may come before, between or after
// the positional arguments, and returns the positional ones. After "--"
// everything is positional (a VALUE of -5).
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if len(args) > 0 && args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		rest := fs.Args()
		if len(args) > 0 && len(rest) < len(args) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil // fs.Parse took the "--"
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// parseValue reads VALUE: a number, true or false, else text.
func parseValue(s string, asString bool) any {
	if asString {
		return s
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return f
	}
	if b, err := strconv.ParseBool(s); err == nil && (s == "true" || s == "false") {
		return b
	}
	return s
}

func printState(stdout, stderr io.Writer, sub string, raw json.RawMessage) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "luafw state %s: %v\n", sub, err)
		return exitFailed
	}
	switch sub {
	case "list":
		var l daemon.StateList
		if err := json.Unmarshal(raw, &l); err != nil {
			return fail(err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KIND\tNAME\tKEYS/VALUE\tDETAIL")
		for _, m := range l.Maps {
			fmt.Fprintf(tw, "map\t%s\t%d\t%s\n", m.Name, m.Keys, scopeDetail(m.Scope, ""))
		}
		for _, c := range l.Counters {
			fmt.Fprintf(tw, "counter\t%s\t%d\t%s\n", c.Name, c.Value, scopeDetail(c.Scope, ""))
		}
		for _, b := range l.Buckets {
			fmt.Fprintf(tw, "bucket\t%s\t%d\t%s\n", b.Name, b.Keys, scopeDetail(b.Scope, fmt.Sprintf("rate %g/s burst %g", b.Rate, b.Burst)))
		}
		tw.Flush()
	case "show":
		var s daemon.StateShow
		if err := json.Unmarshal(raw, &s); err != nil {
			return fail(err)
		}
		if s.Kind == "counter" && s.Value != nil {
			fmt.Fprintf(stdout, "counter %s = %d\n", s.Name, *s.Value)
			return exitOK
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tVALUE\tTYPE\tEXPIRES")
		for _, e := range s.Entries {
			printEntry(tw, e)
		}
		tw.Flush()
		if s.Truncated > 0 {
			fmt.Fprintf(stdout, "(%d more entries; raise --limit)\n", s.Truncated)
		}
	case "get":
		var e daemon.StateEntry
		if err := json.Unmarshal(raw, &e); err != nil {
			return fail(err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tVALUE\tTYPE\tEXPIRES")
		printEntry(tw, e)
		tw.Flush()
	default:
		var c daemon.StateChange
		if err := json.Unmarshal(raw, &c); err != nil {
			return fail(err)
		}
		fleet := ""
		if c.Scope == "cluster" {
			fleet = " (cluster: on every node)"
		}
		switch sub {
		case "set":
			fmt.Fprintf(stdout, "set %s[%s]%s\n", c.Name, c.Key, fleet)
		case "delete":
			switch {
			case c.Changed == 0 && c.Scope == "cluster":
				fmt.Fprintf(stdout, "%s[%s] was not set here (cluster: deleted on every node)\n", c.Name, c.Key)
			case c.Changed == 0:
				fmt.Fprintf(stdout, "%s[%s] was not set\n", c.Name, c.Key)
			default:
				fmt.Fprintf(stdout, "deleted %s[%s]%s\n", c.Name, c.Key, fleet)
			}
		case "flush":
			fmt.Fprintf(stdout, "flushed %s: %d keys deleted%s\n", c.Name, c.Changed, fleet)
		}
	}
	return exitOK
}

// scopeDetail is the DETAIL column of a list row: "cluster" for the
// fleet's shared state, then detail.
func scopeDetail(scope, detail string) string {
	if scope != "cluster" {
		return detail
	}
	if detail == "" {
		return "cluster"
	}
	return "cluster, " + detail
}

func printEntry(w io.Writer, e daemon.StateEntry) {
	exp := "never"
	if e.Expires != nil {
		exp = fmt.Sprintf("%s (in %s)", e.Expires.Format(time.RFC3339), (time.Duration(e.TTL) * time.Second).Round(time.Second))
	}
	v, _ := json.Marshal(e.Value)
	fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", e.Key, strings.TrimSpace(string(v)), e.Type, exp)
}

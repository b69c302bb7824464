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

// stateSubs are luafw state's subcommands; args names each one's
// positional arguments.
func stateSubs() []subcommand {
	return []subcommand{
		{"list", "", "maps, counters and buckets of the running daemon"},
		{"show", "NAME", "a map's entries, a counter's value or a bucket's rate, burst and keys"},
		{"get", "NAME KEY", "one entry of a map"},
		{"set", "NAME KEY VALUE", "set a key (VALUE: a number, true/false, else text; put -- before a VALUE such as -5)"},
		{"delete", "NAME KEY", "delete a key of a map (lift a ban)"},
		{"flush", "NAME", "delete every key of a map"},
	}
}

func stateCommand() *command {
	return &command{
		name:    "state",
		args:    "list|show|get|set|delete|flush [ARGS] [flags]",
		summary: "see and edit the daemon's state maps (lift a ban)",
		about: `Shows and edits the shared state (state.map, state.counter, state.bucket) of the running
daemon: list the maps, counters and bucket families, show one, get, set or delete a key of a map,
or flush a map. Changes are logged by the daemon. Names of the cluster scope (a fleet's shared
state) are marked as such; changes to a cluster map act on every node of the fleet. When a name
exists in both scopes, --scope local or --scope cluster says which.`,
		subs:   stateSubs(),
		define: defineState,
	}
}

func defineState(fs *flag.FlagSet) runner {
	socket, timeout := controlFlags(fs)
	asJSON := fs.Bool("json", false, "print the daemon's answer as JSON")
	limit := fs.Int("limit", 0, "show: at most `N` entries (0: all)")
	ttl := fs.Duration("ttl", 0, "set: the key expires after this `DURATION` (0: never)")
	asString := fs.Bool("string", false, "set: store VALUE as text even if it reads as a number or boolean")
	scope := fs.String("scope", "", "local or cluster: which `SCOPE` has NAME (needed only when both have one)")
	return func(ctx context.Context, pos []string, stdout, stderr io.Writer) int {
		want := strings.Join(subNames(stateSubs()), "|")
		if len(pos) == 0 {
			return usageError(stderr, "state", "missing subcommand (want %s)", want)
		}
		sub := pos[0]
		var names []string
		found := false
		for _, s := range stateSubs() {
			if s.name == sub {
				names, found = strings.Fields(s.args), true
			}
		}
		if !found {
			return usageError(stderr, "state", "unknown subcommand %q (want %s)", sub, want)
		}
		if code := wantArgs(stderr, "state "+sub, pos[1:], names...); code != exitOK {
			return code
		}
		pos = pos[1:]
		a := daemon.StateArgs{Limit: *limit, Scope: *scope}
		if len(pos) >= 1 {
			a.Name = pos[0]
		}
		if len(pos) >= 2 {
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
		if s.Kind == "bucket" && s.Keys != nil {
			fmt.Fprintf(stdout, "bucket %s: rate %g/s, burst %g, %d keys below full (a key's tokens refill by themselves)\n",
				s.Name, s.Rate, s.Burst, *s.Keys)
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

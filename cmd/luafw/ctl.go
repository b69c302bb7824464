package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/luafw/luafw/daemon"
	"github.com/luafw/luafw/daemon/control"
)

// controlFlags adds the flags every control command has.
func controlFlags(fs *flag.FlagSet) (socket *string, timeout *time.Duration) {
	socket = fs.String("socket", "", "the daemon's control socket `PATH` (default: the one of this network namespace, "+daemon.DefaultRunDir+"/netns-INODE.sock)")
	timeout = fs.Duration("timeout", 2*time.Minute, "give up waiting for the daemon after this `DURATION`")
	return socket, timeout
}

// socketPath is --socket, else this network namespace's socket.
func socketPath(flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	p, err := daemon.CurrentPaths(daemon.DefaultRunDir)
	if err != nil {
		return "", err
	}
	return p.Socket, nil
}

// callDaemon runs one control command and maps its failure to an exit code
// and a message on stderr.
func callDaemon(ctx context.Context, name, socket string, timeout time.Duration, result any, stderr io.Writer) int {
	return callDaemonArgs(ctx, name, socket, timeout, nil, result, stderr)
}

// callDaemonArgs is callDaemon with arguments for the command (nil for
// none); "state.get" is named "state get" in messages.
func callDaemonArgs(ctx context.Context, name, socket string, timeout time.Duration, args, result any, stderr io.Writer) int {
	cmd := strings.ReplaceAll(name, ".", " ")
	path, err := socketPath(socket)
	if err != nil {
		fmt.Fprintf(stderr, "luafw %s: %v\n", cmd, err)
		return exitFailed
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return callFailed(cmd, control.Call(ctx, path, name, args, result), stderr)
}

// callFailed maps a control call's error to an exit code (exitOK for nil)
// and, for a failure, a message on stderr naming the command.
func callFailed(cmd string, err error, stderr io.Writer) int {
	var re *control.RemoteError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, control.ErrNoDaemon):
		fmt.Fprintf(stderr, "luafw %s: %v (is `luafw run` running in this network namespace? use --socket to name another)\n", cmd, err)
		return exitNoDaemon
	case errors.As(err, &re):
		fmt.Fprintf(stderr, "luafw %s: %s\n", cmd, re.Msg)
		return exitFailed
	}
	fmt.Fprintf(stderr, "luafw %s: %v\n", cmd, err)
	return exitFailed
}

func reloadCommand() *command {
	return &command{
		name:    "reload",
		args:    "[flags]",
		summary: "reload the daemon's configuration and report the result",
		about: `Asks the daemon of this network namespace to load its configuration file again and waits
for the answer. On success the new plugins and rules replace the running ones at once; on failure
the error (with file:line) is printed, the exit code is 1 and the daemon keeps running its
previous configuration.`,
		define: func(fs *flag.FlagSet) runner {
			socket, timeout := controlFlags(fs)
			return func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
				if code := wantArgs(stderr, "reload", args); code != exitOK {
					return code
				}
				var res daemon.ReloadResult
				code := callDaemon(ctx, "reload", *socket, *timeout, &res, stderr)
				if code == exitFailed {
					fmt.Fprintln(stderr, "luafw reload: the daemon keeps running its previous configuration")
				}
				if code == exitOK {
					fmt.Fprintf(stdout, "reloaded: generation %d, %d plugins, %d callbacks, %d segments\n",
						res.Generation, res.Plugins, res.Callbacks, res.Segments)
				}
				return code
			}
		},
	}
}

func statusCommand() *command {
	return &command{
		name:    "status",
		args:    "[flags]",
		summary: "the daemon's plugins, callback counters and queues",
		about: `Prints the running daemon's version, configuration, reloads, and for each plugin callback
its calls, errors, timeouts and verdicts, and for each diversion (segment) its queues and the
kernel's counters. --json prints all of it as JSON, for scripts.`,
		define: func(fs *flag.FlagSet) runner {
			socket, timeout := controlFlags(fs)
			asJSON := fs.Bool("json", false, "print the daemon's status as JSON")
			return func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
				if code := wantArgs(stderr, "status", args); code != exitOK {
					return code
				}
				return status(ctx, *socket, *timeout, *asJSON, stdout, stderr)
			}
		},
	}
}

// status is luafw status after its flags.
func status(ctx context.Context, socket string, timeout time.Duration, asJSON bool, stdout, stderr io.Writer) int {
	var raw json.RawMessage
	if code := callDaemon(ctx, "status", socket, timeout, &raw, stderr); code != exitOK {
		return code
	}
	if asJSON {
		var buf bytes.Buffer
		if err := json.Indent(&buf, raw, "", "  "); err != nil {
			fmt.Fprintf(stderr, "luafw status: %v\n", err)
			return exitFailed
		}
		fmt.Fprintln(stdout, buf.String())
		return exitOK
	}
	var st daemon.Status
	if err := json.Unmarshal(raw, &st); err != nil {
		fmt.Fprintf(stderr, "luafw status: %v\n", err)
		return exitFailed
	}
	printStatus(stdout, &st)
	return exitOK
}

// printStatus writes the status for people.
func printStatus(w io.Writer, st *daemon.Status) {
	fmt.Fprintf(w, "luafw %s, pid %d, netns %d, up %s\n", st.Version, st.PID, st.Netns,
		(time.Duration(st.Uptime) * time.Second).Round(time.Second))
	fmt.Fprintf(w, "config %s, generation %d, table %s, conntrack %v\n", st.Config, st.Generation, st.Table, st.Conntrack)
	fmt.Fprintf(w, "reloads: %d ok, %d failed\n", st.Reloads.OK, st.Reloads.Failed)
	if st.Reloads.LastError != "" {
		fmt.Fprintf(w, "last reload failed: %s\n", st.Reloads.LastError)
	}
	if b := st.Backend; b != nil {
		state := "connected"
		if !b.Connected {
			state = "UNREACHABLE"
			if b.Reason != "" {
				state += " (" + b.Reason + ")"
			}
		}
		last := "never"
		if b.LastSync != nil {
			last = fmt.Sprintf("%s ago", (time.Duration(b.LastSyncAge * float64(time.Second))).Round(time.Millisecond))
		}
		fmt.Fprintf(w, "state backend %s: %s, last sync %s, %d writes queued, %d dropped, %d auth errors, %d resyncs, pub/sub lag %s\n",
			b.Kind, state, last, b.Queued, b.Dropped, b.AuthErrors, b.Resyncs, (time.Duration(b.LagSeconds * float64(time.Second))).Round(time.Millisecond))
	}
	for _, b := range st.KernelBans {
		fmt.Fprintf(w, "kernel bans %s map %s: %d elements in inet %s %s_*, %d sent, %d refused, %d rebuilds (%d overflows, %d errors)\n",
			b.Scope, b.Map, b.Elements, st.Table, b.Set, b.Sent, b.Refused, b.Rebuilds, b.Overflows, b.Errors)
	}
	if o := st.Outputs; o != nil {
		fmt.Fprintf(w, "events: %d written, %d suppressed, %d lost; capture: %d packets, %d lost\n",
			o.Events.Written, o.Events.Suppressed, o.Events.Lost, o.Capture.Written, o.Capture.Lost)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nPLUGIN\tCALLBACK\tHOOK\tPRIORITY\tCALLS\tERRORS\tTIMEOUTS\tVERDICTS\tSTATE")
	for _, p := range st.Plugins {
		state := pluginState(p.Quarantined)
		for _, c := range p.Callbacks {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", p.Name, c.Name, c.Hook, c.Priority, c.Calls, c.Errors, c.Timeouts, counts(c.Verdicts), state)
		}
	}
	tw.Flush()
	printTimers(w, st)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nSEGMENT\tAFTER\tQUEUES\tRECEIVED\tWAITING\tDROPPED\tVERDICTS")
	for _, s := range st.Segments {
		t := sumSockets(s)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\n", s.Key, s.After, strings.Join(t.queues, ","), t.received, t.waiting, t.dropped, counts(s.Verdicts))
	}
	tw.Flush()
}

// printTimers writes the plugins' timers, when any is set.
func printTimers(w io.Writer, st *daemon.Status) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := false
	for _, p := range st.Plugins {
		for _, t := range p.Timers {
			if !header {
				fmt.Fprintln(tw, "\nPLUGIN\tTIMER\tEVERY\tNEXT\tRUNS\tFAILURES\tSKIPPED\tLAST ERROR")
				header = true
			}
			every := "once"
			if t.Every > 0 {
				every = (time.Duration(t.Every * float64(time.Second))).String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", p.Name, t.Where, every, t.Next.Format(time.TimeOnly),
				t.Runs, t.Failures, t.Skipped, t.LastError)
		}
	}
	tw.Flush()
}

// counts renders the non-zero counters of a verdict map, "-" for none.
func counts(m map[string]uint64) string {
	var parts []string
	for k, v := range m {
		if v > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", k, v))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// pluginState is a plugin's STATE column in status and top.
func pluginState(quarantined bool) string {
	if quarantined {
		return "QUARANTINED"
	}
	return "ok"
}

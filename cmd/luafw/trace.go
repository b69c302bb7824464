package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/luafw/luafw/daemon"
	"github.com/luafw/luafw/daemon/control"
)

func traceCommand() *command {
	return &command{
		name:    "trace",
		args:    "[flags] [LUA-EXPRESSION]",
		summary: "show each matching packet's callbacks, verdicts and changes",
		about: `Shows, for each packet the filter matches, every callback that ran with its verdict, time
and changes, and what the kernel was told. The expression is Lua over pkt (as plugins see it),
e.g. 'pkt.dport == 23 and pkt.proto == "tcp"'; flags and expression combine. Stops after -n
packets or --for, or on Ctrl-C.`,
		complete: map[string]string{
			"proto": "tcp udp icmp icmpv6", "hook": "prerouting input forward output postrouting",
			"verdict": "accept drop stop reject repeat",
		},
		define: defineTrace,
	}
}

func defineTrace(fs *flag.FlagSet) runner {
	var a daemon.TraceArgs
	socket, _ := controlFlags(fs)
	fs.StringVar(&a.Proto, "proto", "", "only this protocol `PROTO`: tcp, udp, icmp, icmpv6 or a number")
	fs.StringVar(&a.Src, "src", "", "only packets from this `ADDR` (an address or prefix)")
	fs.StringVar(&a.Dst, "dst", "", "only packets to this `ADDR` (an address or prefix)")
	fs.Func("port", "only packets with this source or destination `PORT`", func(s string) error {
		var p uint16
		if _, err := fmt.Sscan(s, &p); err != nil || p == 0 {
			return fmt.Errorf("bad port %q (want 1-65535)", s)
		}
		a.Port = p
		return nil
	})
	hooks := fs.String("hook", "", "only packets at these `HOOKS`, comma-separated (prerouting,input,forward,output,postrouting)")
	fs.StringVar(&a.Plugin, "plugin", "", "only packets a callback of this `PLUGIN` ran on (a plugin the daemon has loaded)")
	verdict := fs.String("verdict", "", "only packets with these final `VERDICTS`, comma-separated (accept,drop,stop,reject,repeat)")
	count := fs.Int("n", daemon.DefaultTraceCount, "stop after `N` packets")
	dur := fs.Duration("for", daemon.DefaultTraceFor, "stop after this `DURATION`")
	asJSON := fs.Bool("json", false, "print one JSON object per packet")
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		switch {
		case *count <= 0:
			return usageError(stderr, "trace", "-n %d: want a positive number of packets", *count)
		case *dur <= 0:
			return usageError(stderr, "trace", "--for %s: want a positive duration", *dur)
		}
		a.Expr = strings.Join(args, " ")
		a.Hooks, a.Verdicts = splitList(*hooks), splitList(*verdict)
		a.Count, a.Seconds = *count, dur.Seconds()
		return trace(ctx, *socket, &a, *dur, *asJSON, stdout, stderr)
	}
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// trace is luafw trace after its flags.
func trace(ctx context.Context, socket string, a *daemon.TraceArgs, dur time.Duration, asJSON bool, stdout, stderr io.Writer) int {
	path, err := socketPath(socket)
	if err != nil {
		fmt.Fprintf(stderr, "luafw trace: %v\n", err)
		return exitFailed
	}
	// The daemon ends the trace; this is the fallback for a daemon that
	// stops answering.
	ctx, cancel := context.WithTimeout(ctx, dur+control.StreamWriteTimeout+5*time.Second)
	defer cancel()
	var sum daemon.TraceSummary
	each := func(raw json.RawMessage) error {
		var item daemon.TraceItem
		if err := json.Unmarshal(raw, &item); err != nil {
			return err
		}
		if item.Lost > 0 {
			fmt.Fprintf(stderr, "… %d trace lines lost: reader too slow\n", item.Lost)
		}
		if item.FilterErrors > 0 {
			fmt.Fprintf(stderr, "… %d packets not matched: the filter failed on them: %s\n", item.FilterErrors, item.FilterError)
		}
		if item.Packet == nil {
			return nil
		}
		if asJSON {
			b, err := json.Marshal(item.Packet)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(stdout, "%s\n", b)
			return err
		}
		return printTracePacket(stdout, item.Packet)
	}
	err = control.Stream(ctx, path, "trace", a, each, &sum)
	switch {
	case err == nil:
		fmt.Fprintf(stderr, "trace ended (%s): %d shown, %d matched, %d lost, %d filter errors\n",
			sum.Ended, sum.Shown, sum.Matched, sum.Lost, sum.FilterErrors)
		if sum.FilterErrors > 0 {
			fmt.Fprintf(stderr, "the filter's latest error: %s\n", sum.FilterError)
		}
		return exitOK
	case ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled):
		fmt.Fprintln(stderr, "trace detached")
		return exitOK
	}
	return callFailed("trace", err, stderr)
}

// printTracePacket writes one packet for people: a header line, a line per
// callback, and the outcome.
func printTracePacket(w io.Writer, p *daemon.TracePacket) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", p.Time.Local().Format("15:04:05.000000"), p.Hook)
	if p.Segment != "" {
		fmt.Fprintf(&b, " [%s]", p.Segment)
	}
	fmt.Fprintf(&b, " %s %s -> %s", p.Proto, hostPort(p.Src, p.SPort, p.Proto), hostPort(p.Dst, p.DPort, p.Proto))
	if p.In != "" {
		fmt.Fprintf(&b, " in %s", p.In)
	}
	if p.Out != "" {
		fmt.Fprintf(&b, " out %s", p.Out)
	}
	fmt.Fprintf(&b, " len %d", p.Len)
	if p.CTState != "" {
		fmt.Fprintf(&b, " ct %s", p.CTState)
	}
	if p.Mark != 0 {
		fmt.Fprintf(&b, " mark %#x", p.Mark)
	}
	if len(p.Tags) > 0 {
		fmt.Fprintf(&b, " tags %s", strings.Join(p.Tags, ","))
	}
	b.WriteByte('\n')
	for _, c := range p.Callbacks {
		fmt.Fprintf(&b, "  %-28s prio %-6d %-7s %9s", c.Plugin+"/"+c.Name, c.Priority, c.Verdict, time.Duration(c.TookNS))
		if c.Failed {
			b.WriteString(" (failed: on_error)")
		}
		if c.Mark != nil {
			fmt.Fprintf(&b, " mark=%#x", *c.Mark)
		}
		for _, tg := range c.Tagged {
			fmt.Fprintf(&b, " +tag %s", tg)
		}
		for _, tg := range c.Untagged {
			fmt.Fprintf(&b, " -tag %s", tg)
		}
		b.WriteString(ctText(c.CT))
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "  => %s", p.Verdict)
	if p.By != "" {
		fmt.Fprintf(&b, " by %s/%s", p.By, p.ByName)
	}
	if p.Errors > 0 {
		fmt.Fprintf(&b, ", %d failed", p.Errors)
	}
	if p.Rewritten {
		b.WriteString(", rewritten")
	}
	if p.Injected > 0 {
		fmt.Fprintf(&b, ", %d sent", p.Injected)
	}
	if p.Kernel.Verdict != "" {
		fmt.Fprintf(&b, "; kernel: %s", p.Kernel.Verdict)
		if p.Kernel.Mark != nil {
			fmt.Fprintf(&b, " mark %#x", *p.Kernel.Mark)
		}
	}
	b.WriteByte('\n')
	_, err := io.WriteString(w, b.String())
	return err
}

func hostPort(addr string, port uint16, proto string) string {
	if addr == "" {
		addr = "?"
	}
	if proto != "tcp" && proto != "udp" {
		return addr
	}
	if strings.Contains(addr, ":") {
		return fmt.Sprintf("[%s]:%d", addr, port)
	}
	return fmt.Sprintf("%s:%d", addr, port)
}

func ctText(ct *daemon.TraceCT) string {
	if ct == nil {
		return ""
	}
	var b strings.Builder
	if ct.Mark != nil {
		fmt.Fprintf(&b, " ct.mark=%#x/%#x", *ct.Mark, ct.MarkMask)
	}
	if ct.Timeout != nil {
		fmt.Fprintf(&b, " ct.timeout=%ds", *ct.Timeout)
	}
	for _, l := range ct.Labels {
		fmt.Fprintf(&b, " +ct.label %d", l)
	}
	return b.String()
}

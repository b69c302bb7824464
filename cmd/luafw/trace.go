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

const traceUsage = `usage: luafw trace [FLAGS] [LUA-EXPRESSION]

Shows, for each packet the filter matches, every callback that ran with its
verdict, time and changes, and what the kernel was told. The expression is
Lua over pkt (as plugins see it), e.g. 'pkt.dport == 23 and pkt.proto == "tcp"';
flags and expression combine. Stops after -n packets or --for, or on Ctrl-C.
`

// traceFlags are trace's flags; parse accepts them before and after the
// expression.
type traceFlags struct {
	fs             *flag.FlagSet
	socket         *string
	args           daemon.TraceArgs
	hooks, verdict *string
	count          *int
	dur            *time.Duration
	asJSON         *bool
}

func newTraceFlags(stderr io.Writer) *traceFlags {
	t := &traceFlags{fs: flag.NewFlagSet("trace", flag.ContinueOnError)}
	fs := t.fs
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, traceUsage); fs.PrintDefaults() }
	t.socket, _ = controlFlags(fs)
	fs.StringVar(&t.args.Proto, "proto", "", "protocol: tcp, udp, icmp, icmpv6 or a number")
	fs.StringVar(&t.args.Src, "src", "", "source address or prefix")
	fs.StringVar(&t.args.Dst, "dst", "", "destination address or prefix")
	fs.Func("port", "source or destination port", func(s string) error {
		var p uint16
		if _, err := fmt.Sscan(s, &p); err != nil || p == 0 {
			return fmt.Errorf("bad port %q", s)
		}
		t.args.Port = p
		return nil
	})
	t.hooks = fs.String("hook", "", "hooks, comma-separated (prerouting,input,forward,output,postrouting)")
	fs.StringVar(&t.args.Plugin, "plugin", "", "only packets a callback of this plugin ran on")
	t.verdict = fs.String("verdict", "", "only packets with these final verdicts, comma-separated (accept,drop,stop,reject,repeat)")
	t.count = fs.Int("n", daemon.DefaultTraceCount, "stop after this many packets")
	t.dur = fs.Duration("for", daemon.DefaultTraceFor, "stop after this long")
	t.asJSON = fs.Bool("json", false, "print one JSON object per packet")
	return t
}

// parse reads flags and the expression words in any order.
func (t *traceFlags) parse(args []string) error {
	var expr []string
	for {
		if err := t.fs.Parse(args); err != nil {
			return err
		}
		args = t.fs.Args()
		if len(args) == 0 {
			break
		}
		expr = append(expr, args[0])
		args = args[1:]
	}
	t.args.Expr = strings.Join(expr, " ")
	t.args.Hooks, t.args.Verdicts = splitList(*t.hooks), splitList(*t.verdict)
	t.args.Count, t.args.Seconds = *t.count, t.dur.Seconds()
	if *t.count <= 0 || *t.dur <= 0 {
		return errors.New("-n and --for must be positive")
	}
	return nil
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

func cmdTrace(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	t := newTraceFlags(stderr)
	if err := t.parse(args); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "luafw trace: %v\n", err)
		}
		return exitUsage
	}
	path, err := socketPath(*t.socket)
	if err != nil {
		fmt.Fprintf(stderr, "luafw trace: %v\n", err)
		return exitFailed
	}
	// The daemon ends the trace; this is the fallback for a daemon that
	// stops answering.
	ctx, cancel := context.WithTimeout(ctx, *t.dur+control.StreamWriteTimeout+5*time.Second)
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
			fmt.Fprintf(stderr, "… %d packets not matched: the filter failed on them (error or timeout)\n", item.FilterErrors)
		}
		if item.Packet == nil {
			return nil
		}
		if *t.asJSON {
			b, err := json.Marshal(item.Packet)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(stdout, "%s\n", b)
			return err
		}
		return printTracePacket(stdout, item.Packet)
	}
	err = control.Stream(ctx, path, "trace", &t.args, each, &sum)
	switch {
	case err == nil:
		fmt.Fprintf(stderr, "trace ended (%s): %d shown, %d matched, %d lost, %d filter errors\n",
			sum.Ended, sum.Shown, sum.Matched, sum.Lost, sum.FilterErrors)
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

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/luafw/luafw/daemon"
	"github.com/luafw/luafw/daemon/control"
)

// minTopInterval is the shortest refresh interval of luafw top.
const minTopInterval = 100 * time.Millisecond

func topCommand() *command {
	return &command{
		name:    "top",
		args:    "[flags]",
		summary: "live view of plugins, callbacks and queues",
		about: `Shows the daemon's status every interval as rates over the interval: calls, verdicts,
latency quantiles and failures of each callback, packets and drops of each queue. On a terminal it
redraws in place (q or Ctrl-C quits); when stdout is not a terminal it prints one view, over one
interval, and exits.`,
		define: defineTop,
	}
}

func defineTop(fs *flag.FlagSet) runner {
	socket, timeout := controlFlags(fs)
	interval := fs.Duration("interval", time.Second, "refresh `DURATION` (and the window rates are computed over; at least "+minTopInterval.String()+")")
	once := fs.Bool("once", false, "print one view and exit (the default when stdout is not a terminal)")
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		if code := wantArgs(stderr, "top", args); code != exitOK {
			return code
		}
		if *interval < minTopInterval {
			return usageError(stderr, "top", "--interval %s is below the minimum %s", *interval, minTopInterval)
		}
		return top(ctx, *socket, *timeout, *interval, *once, stdout, stderr)
	}
}

// top is luafw top after its flags: the daemon's status every interval,
// redrawn in place on a terminal.
func top(ctx context.Context, socket string, timeout, interval time.Duration, once bool, stdout, stderr io.Writer) int {
	path, err := socketPath(socket)
	if err != nil {
		fmt.Fprintf(stderr, "luafw top: %v\n", err)
		return exitFailed
	}
	snap := func() (*daemon.Status, int) {
		var st daemon.Status
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		err := control.Call(cctx, path, "status", nil, &st)
		if err == nil {
			return &st, exitOK
		}
		if ctx.Err() != nil {
			return nil, exitOK
		}
		return nil, callFailed("top", err, stderr)
	}
	tty := false
	if f, ok := stdout.(*os.File); ok && !once {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		tty = err == nil
	}
	prev, code := snap()
	if prev == nil {
		return code
	}
	prevAt := time.Now()
	if tty {
		var stop func()
		ctx, stop = keyQuits(ctx)
		defer stop()
	}
	for {
		select {
		case <-ctx.Done():
			return exitOK
		case <-time.After(interval):
		}
		cur, code := snap()
		if cur == nil {
			return code
		}
		now := time.Now()
		var b strings.Builder
		if tty {
			b.WriteString("\x1b[H\x1b[2J") // home, clear
		}
		renderTop(&b, prev, cur, now.Sub(prevAt), now)
		if tty {
			b.WriteString("\n(q quits)")
		}
		io.WriteString(stdout, b.String())
		if !tty {
			return exitOK
		}
		prev, prevAt = cur, now
	}
}

// keyQuits puts the terminal on stdin in cbreak mode (keys arrive without
// Enter; Ctrl-C still signals) and cancels the context when q is pressed.
// stop restores the terminal.
func keyQuits(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	fd := int(os.Stdin.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return ctx, cancel
	}
	raw := *old
	raw.Lflag &^= unix.ICANON | unix.ECHO
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
	if unix.IoctlSetTermios(fd, unix.TCSETS, &raw) != nil {
		return ctx, cancel
	}
	go func() {
		var b [1]byte
		for {
			n, err := os.Stdin.Read(b[:])
			if err != nil || (n == 1 && (b[0] == 'q' || b[0] == 'Q')) {
				cancel()
				return
			}
		}
	}()
	return ctx, func() {
		cancel()
		unix.IoctlSetTermios(fd, unix.TCSETS, old)
		fmt.Fprintln(os.Stdout)
	}
}

type cbKey struct {
	plugin, name, hook string
	priority           int
}

// renderTop writes the view of what happened between two snapshots.
func renderTop(w io.Writer, prev, cur *daemon.Status, dt time.Duration, now time.Time) {
	r := rater(dt.Seconds())
	fmt.Fprintf(w, "luafw %s  pid %d  up %s  generation %d  %s  (rates over %.1fs)\n", cur.Version, cur.PID,
		(time.Duration(cur.Uptime) * time.Second).Round(time.Second), cur.Generation, now.Format("15:04:05"), float64(r))
	var callbacks strings.Builder
	fails := writeCallbacks(&callbacks, prev, cur, r)
	var accept, drop, other float64
	for _, s := range cur.Segments {
		ps := findSegment(prev, s.Key)
		for v, n := range s.Verdicts {
			switch x := r.rate(ps.Verdicts[v], n); v {
			case "accept", "stop":
				accept += x
			case "drop":
				drop += x
			default:
				other += x
			}
		}
	}
	// A packet gets a verdict in every segment it passes: these are
	// verdicts, not packets.
	fmt.Fprintf(w, "total: %s verdicts/s (accept %s, drop %s, other %s), %s callback failures/s\n\n",
		num(accept+drop+other), num(accept), num(drop), num(other), num(fails))
	io.WriteString(w, callbacks.String())
	fmt.Fprintln(w)
	writeTimers(w, prev, cur, r)
	writeSegments(w, prev, cur, r)
}

// writeTimers writes the plugins' timers (fw.every, fw.after), when any
// is set: runs and failures per second, and when each runs next.
func writeTimers(w io.Writer, prev, cur *daemon.Status, r rater) {
	before := map[string]daemon.TimerStatus{}
	for _, p := range prev.Plugins {
		for _, t := range p.Timers {
			before[p.Name+" "+t.Where] = t
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	header := false
	for _, p := range cur.Plugins {
		for _, t := range p.Timers {
			if !header {
				fmt.Fprintln(tw, "PLUGIN\tTIMER\tRUNS/S\tFAIL/S\tSKIPPED\tNEXT\t")
				header = true
			}
			b := before[p.Name+" "+t.Where]
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t\n", p.Name, t.Where, num(r.rate(b.Runs, t.Runs)),
				num(r.rate(b.Failures, t.Failures)), t.Skipped, t.Next.Format("15:04:05"))
		}
	}
	tw.Flush()
	if header {
		fmt.Fprintln(w)
	}
}

// rater turns counter differences into rates over its seconds.
type rater float64

func (secs rater) rate(a, b uint64) float64 {
	if b < a { // counters restarted
		return float64(b) / float64(secs)
	}
	return float64(b-a) / float64(secs)
}

// writeCallbacks writes the callback table and returns the failures/s.
func writeCallbacks(w io.Writer, prev, cur *daemon.Status, r rater) (fails float64) {
	before := map[cbKey]daemon.CallbackStatus{}
	for _, p := range prev.Plugins {
		for _, c := range p.Callbacks {
			before[cbKey{p.Name, c.Name, c.Hook, c.Priority}] = c
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "PLUGIN\tCALLBACK\tHOOK\tPRIO\tCALLS/S\tACCEPT/S\tDROP/S\tOTHER/S\tP50\tP99\tFAIL/S\tSTATE\t")
	for _, p := range cur.Plugins {
		state := pluginState(p.Quarantined)
		for _, c := range p.Callbacks {
			b := before[cbKey{p.Name, c.Name, c.Hook, c.Priority}]
			var acc, drop, other float64
			for v, n := range c.Verdicts {
				switch x := r.rate(b.Verdicts[v], n); v {
				case "accept":
					acc += x
				case "drop":
					drop += x
				default:
					other += x
				}
			}
			fail := r.rate(b.Errors+b.Timeouts+b.Skipped, c.Errors+c.Timeouts+c.Skipped)
			fails += fail
			p50, p99 := quantiles(cur.LatencyBoundsNS, b.LatencyBuckets, c.LatencyBuckets)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", p.Name, c.Name, c.Hook, c.Priority,
				num(r.rate(b.Calls, c.Calls)), num(acc), num(drop), num(other), p50, p99, num(fail), state)
		}
	}
	tw.Flush()
	return fails
}

// writeSegments writes the segment (queue) table.
func writeSegments(w io.Writer, prev, cur *daemon.Status, r rater) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SEGMENT\tQUEUES\tPKTS/S\tWAITING\tDROPPED\tDROPPED/S\tENOBUFS\t")
	for _, s := range cur.Segments {
		now, then := sumSockets(s), sumSockets(findSegment(prev, s.Key))
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%d\t\n", s.Key, strings.Join(now.queues, ","), num(r.rate(then.received, now.received)),
			now.waiting, now.dropped, num(r.rate(then.dropped, now.dropped)), now.enobufs)
	}
	tw.Flush()
}

func findSegment(st *daemon.Status, key string) daemon.SegmentStatus {
	for _, s := range st.Segments {
		if s.Key == key {
			return s
		}
	}
	return daemon.SegmentStatus{}
}

// num renders a rate: one decimal below 10, whole numbers above.
func num(r float64) string {
	switch {
	case r == 0:
		return "0"
	case r < 10:
		return fmt.Sprintf("%.1f", r)
	}
	return fmt.Sprintf("%.0f", math.Round(r))
}

// quantiles are the p50 and p99 of the calls timed between two snapshots of
// a latency histogram, as the upper bound of the bucket they fall in ("-"
// when none was timed).
func quantiles(bounds []int64, before, after []uint64) (p50, p99 string) {
	delta := make([]uint64, len(after))
	var total uint64
	for i := range after {
		delta[i] = after[i]
		if i < len(before) && before[i] <= after[i] {
			delta[i] -= before[i]
		}
		total += delta[i]
	}
	if total == 0 {
		return "-", "-"
	}
	q := func(f float64) string {
		want := uint64(math.Ceil(f * float64(total)))
		var cum uint64
		for i, n := range delta {
			cum += n
			if cum >= want {
				if i < len(bounds) {
					return "≤" + time.Duration(bounds[i]).String()
				}
				break
			}
		}
		if len(bounds) == 0 {
			return "?"
		}
		return ">" + time.Duration(bounds[len(bounds)-1]).String()
	}
	return q(0.50), q(0.99)
}

// socketSums are a segment's queue counters summed over its sockets.
type socketSums struct {
	queues                              []string
	received, waiting, dropped, enobufs uint64 // dropped: the kernel's, queue full or undeliverable
}

func sumSockets(s daemon.SegmentStatus) socketSums {
	var t socketSums
	for _, so := range s.Sockets {
		for _, q := range so.Queues {
			t.queues = append(t.queues, fmt.Sprint(q))
		}
		t.received += so.Received
		t.enobufs += so.ENOBUFS
		for _, k := range so.Kernel {
			t.waiting += k.Waiting
			t.dropped += k.Dropped + k.UserDropped
		}
	}
	return t
}

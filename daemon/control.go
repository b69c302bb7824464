package daemon

import (
	"context"
	"encoding/json"
	"os"
	"time"

	"github.com/prometheus/procfs"

	"github.com/luafw/luafw/daemon/control"
	"github.com/luafw/luafw/daemon/observe"
	"github.com/luafw/luafw/internal/engine"
)

// registerCommands gives the control socket the daemon's commands.
func (d *Daemon) registerCommands(srv *control.Server) {
	srv.Handle("reload", func(context.Context, json.RawMessage, func(any) error) (any, error) {
		res, err := d.ReloadAndReport()
		if err != nil {
			return nil, err
		}
		return res, nil
	})
	srv.Handle("status", func(context.Context, json.RawMessage, func(any) error) (any, error) {
		return d.Status(), nil
	})
	var cl StateScope
	switch {
	case d.cluster != nil:
		cl = ClusterScope(d.cluster)
	case d.eng.LocalClusterState() != nil:
		cl = LocalScope(d.eng.LocalClusterState())
	}
	HandleState(srv, d.eng.State(), cl, d.log)
	srv.Handle("trace", d.trace)
}

// Status is what `luafw status` shows: the daemon, its plugins with their
// callbacks' counters, and its segments with their queues' counters.
type Status struct {
	Version    string    `json:"version"`
	PID        int       `json:"pid"`
	Netns      uint64    `json:"netns"`
	Config     string    `json:"config"`
	Generation uint64    `json:"generation"`
	Started    time.Time `json:"started"`
	Uptime     float64   `json:"uptime_seconds"`
	Table      string    `json:"table"`
	Conntrack  bool      `json:"conntrack"`
	Reloads    struct {
		OK        uint64 `json:"ok"`
		Failed    uint64 `json:"failed"`
		LastError string `json:"last_error,omitempty"` // of the last reload, if it failed
	} `json:"reloads"`
	Plugins  []PluginStatus  `json:"plugins"`
	Segments []SegmentStatus `json:"segments"`
	// Outputs counts decision events and captured packets; absent when
	// neither is configured.
	Outputs *observe.Stats `json:"outputs,omitempty"`
	// LatencyBoundsNS are the upper bounds of the callbacks' latency
	// buckets; each callback's latency_buckets has one more, for longer.
	LatencyBoundsNS []int64 `json:"latency_bounds_ns"`
	// Backend is the cluster state's backend; absent when state is local.
	Backend *BackendStatus `json:"backend,omitempty"`
	// KernelBans are the state maps mirrored into kernel sets (state.map's
	// kernel option); absent when none.
	KernelBans []BanStatus `json:"kernel_bans,omitempty"`
}

// BackendStatus is the cluster state's Redis backend as `luafw status`
// shows it.
type BackendStatus struct {
	Kind      string `json:"kind"` // redis
	Connected bool   `json:"connected"`
	// Reason is why Redis was last unreachable (down, auth, tls); empty
	// while connected.
	Reason string `json:"reason,omitempty"`
	// LastSync is when the last sync pipeline succeeded, LastSyncAge
	// how long ago (seconds); absent before the first.
	LastSync    *time.Time `json:"last_sync,omitempty"`
	LastSyncAge float64    `json:"last_sync_age_seconds,omitempty"`
	Queued      int        `json:"queued"`      // map writes waiting to be sent
	Dropped     uint64     `json:"dropped"`     // map writes dropped: queue full or too old
	AuthErrors  uint64     `json:"auth_errors"` // attempts refused on credentials
	Resyncs     uint64     `json:"resyncs"`     // map loads after a gap or a failed check
	// LagSeconds is how long after it was written the last write heard
	// from the fleet was applied here (pub/sub lag, writer's queue included).
	LagSeconds float64 `json:"lag_seconds"`
}

// PluginStatus is one running plugin.
type PluginStatus struct {
	Name                string           `json:"name"`
	File                string           `json:"file,omitempty"`
	Quarantined         bool             `json:"quarantined"`
	ConsecutiveFailures int64            `json:"consecutive_failures"`
	Callbacks           []CallbackStatus `json:"callbacks"`
	Timers              []TimerStatus    `json:"timers,omitempty"`
}

// TimerStatus is one timer a plugin has set (fw.every, fw.after).
type TimerStatus struct {
	Where     string    `json:"where"`                   // file:line of the call that set it
	Every     float64   `json:"every_seconds,omitempty"` // 0: fw.after
	Next      time.Time `json:"next"`
	Runs      uint64    `json:"runs"`
	Failures  uint64    `json:"failures"`
	Skipped   uint64    `json:"skipped"` // while quarantined
	LastError string    `json:"last_error,omitempty"`
}

// CallbackStatus is one running callback and its counters since start.
type CallbackStatus struct {
	Name     string            `json:"name"`
	Hook     string            `json:"hook"`
	Priority int               `json:"priority"`
	Calls    uint64            `json:"calls"`
	Errors   uint64            `json:"errors"`
	Timeouts uint64            `json:"timeouts"`
	Skipped  uint64            `json:"skipped"` // while quarantined
	Verdicts map[string]uint64 `json:"verdicts"`
	// The timed calls (one in 16): how many, their total time, and their
	// count per latency bucket (not cumulative).
	Timed          uint64   `json:"timed"`
	LatencySumNS   int64    `json:"latency_sum_ns"`
	LatencyBuckets []uint64 `json:"latency_buckets,omitempty"`
}

// SegmentStatus is one diversion and what it decided.
type SegmentStatus struct {
	Key           string            `json:"key"`
	Hook          string            `json:"hook"`
	ChainPriority int32             `json:"chain_priority"`
	After         string            `json:"after,omitempty"`
	Verdicts      map[string]uint64 `json:"verdicts"`
	CTSubmitted   uint64            `json:"ct_updates_submitted"`
	CTDropped     uint64            `json:"ct_updates_dropped"`
	Sockets       []SocketStatus    `json:"sockets"`
}

// SocketStatus is one queue socket of a segment (one per balanced queue).
type SocketStatus struct {
	Queues       []uint16            `json:"queues"`
	Received     uint64              `json:"received"`
	Bursts       uint64              `json:"bursts"`
	VerdictsSent uint64              `json:"verdicts_sent"`
	SendErrors   uint64              `json:"send_errors"`
	RecvErrors   uint64              `json:"recv_errors"`
	ENOBUFS      uint64              `json:"enobufs"`
	ParseErrors  uint64              `json:"parse_errors"`
	Kernel       []KernelQueueStatus `json:"kernel,omitempty"`
}

// KernelQueueStatus is the kernel's view of one queue
// (/proc/net/netfilter/nfnetlink_queue).
type KernelQueueStatus struct {
	Queue       uint16 `json:"queue"`
	Waiting     uint64 `json:"waiting"`      // packets waiting for a verdict
	Dropped     uint64 `json:"dropped"`      // queue full
	UserDropped uint64 `json:"user_dropped"` // undeliverable to the socket
}

// Status reports the running daemon.
func (d *Daemon) Status() Status {
	var s Status
	s.Version, s.PID, s.Config = d.svc.version, os.Getpid(), d.cfgPath
	s.Netns, _ = NamespaceID()
	s.Generation = d.eng.Generation()
	if !d.svc.started.IsZero() {
		s.Started = d.svc.started
		s.Uptime = time.Since(d.svc.started).Seconds()
	}
	s.Reloads.OK, s.Reloads.Failed = d.reloads.Load(), d.failed.Load()
	if e := d.svc.lastError.Load(); e != nil {
		s.Reloads.LastError = *e
	}
	s.Plugins = pluginStatus(d.eng)
	if d.cluster != nil {
		cs := d.cluster.Stats()
		b := &BackendStatus{Kind: "redis", Connected: cs.Connected, Reason: cs.Reason, Queued: cs.Queued,
			Dropped: cs.Dropped + cs.Stale, AuthErrors: cs.AuthErrors, Resyncs: cs.Gaps + cs.Repairs, LagSeconds: cs.Lag.Seconds()}
		if !cs.LastSync.IsZero() {
			t := cs.LastSync.UTC()
			b.LastSync, b.LastSyncAge = &t, time.Since(cs.LastSync).Seconds()
		}
		s.Backend = b
	}
	if obs := d.out.obs.Load(); obs != nil {
		st := obs.Stats()
		s.Outputs = &st
	}
	s.KernelBans = d.bans.status()
	for _, b := range engine.LatencyBuckets() {
		s.LatencyBoundsNS = append(s.LatencyBoundsNS, int64(b))
	}
	kernel := map[uint16]procfs.NFNetLinkQueue{}
	if kq, err := kernelQueues(); err == nil {
		for _, q := range kq {
			kernel[uint16(q.QueueID)] = q
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s.Table, s.Conntrack = d.rules.Table, d.cfg.ConntrackEnabled()
	for _, seg := range d.plan {
		s.Segments = append(s.Segments, d.segmentStatus(seg, kernel))
	}
	return s
}

// segmentStatus reports one segment. Called with mu held.
func (d *Daemon) segmentStatus(seg Segment, kernel map[uint16]procfs.NFNetLinkQueue) SegmentStatus {
	ss := SegmentStatus{Key: seg.Key(), Hook: seg.Hook.String(), ChainPriority: seg.ChainPriority, After: seg.After,
		Verdicts: map[string]uint64{}}
	if st := d.segStats[seg.Key()]; st != nil {
		for v := range st.verdicts {
			ss.Verdicts[engine.Verdict(v).String()] = st.verdicts[v].Load()
		}
		ss.CTSubmitted, ss.CTDropped = st.ctSubmit.Load(), st.ctDrop.Load()
	}
	r := d.runners[seg.Key()]
	if r == nil {
		return ss
	}
	for _, sock := range r.socks {
		st, info := sock.Stats(), sock.Info()
		so := SocketStatus{Queues: info.Queues, Received: st.Received, Bursts: st.Bursts, VerdictsSent: st.VerdictsSent,
			SendErrors: st.SendErrors, RecvErrors: st.RecvErrors, ENOBUFS: st.ENOBUFS, ParseErrors: st.ParseErrors}
		for _, q := range info.Queues {
			if k, ok := kernel[q]; ok {
				so.Kernel = append(so.Kernel, KernelQueueStatus{Queue: q, Waiting: uint64(k.QueueTotal), Dropped: uint64(k.QueueDropped), UserDropped: uint64(k.QueueUserDropped)})
			}
		}
		ss.Sockets = append(ss.Sockets, so)
	}
	return ss
}

// pluginStatus joins the running plugins, their callbacks in the running
// chains, and the callbacks' counters.
func pluginStatus(eng *engine.Engine) []PluginStatus {
	type cbKey struct {
		plugin, name string
		hook         engine.Hook
		priority     int
	}
	stats := map[cbKey]engine.CallbackStats{}
	for _, cs := range eng.Stats() {
		stats[cbKey{cs.Plugin, cs.Name, cs.Hook, cs.Priority}] = cs
	}
	var out []PluginStatus
	index := map[string]int{}
	for _, p := range eng.Plugins() {
		index[p.Name] = len(out)
		out = append(out, PluginStatus{Name: p.Name, File: p.File, Quarantined: p.Quarantined,
			ConsecutiveFailures: p.ConsecutiveFailures, Callbacks: []CallbackStatus{}})
	}
	for _, c := range eng.Chains() {
		i, ok := index[c.Plugin]
		if !ok { // a Go callback of an embedding program
			index[c.Plugin] = len(out)
			i = len(out)
			out = append(out, PluginStatus{Name: c.Plugin, Callbacks: []CallbackStatus{}})
		}
		cs := stats[cbKey{c.Plugin, c.Name, c.Hook, c.Priority}]
		verdicts := cs.Verdicts
		if verdicts == nil {
			verdicts = map[string]uint64{}
		}
		out[i].Callbacks = append(out[i].Callbacks, CallbackStatus{Name: c.Name, Hook: c.Hook.String(), Priority: c.Priority,
			Calls: cs.Calls, Errors: cs.Errors, Timeouts: cs.Timeouts, Skipped: cs.Skipped, Verdicts: verdicts,
			Timed: cs.Timed, LatencySumNS: int64(cs.Latency), LatencyBuckets: cs.Buckets})
	}
	for _, ti := range eng.Timers() {
		if i, ok := index[ti.Plugin]; ok {
			out[i].Timers = append(out[i].Timers, TimerStatus{Where: ti.Where, Every: ti.Every.Seconds(), Next: ti.Next,
				Runs: ti.Runs, Failures: ti.Failures, Skipped: ti.Skipped, LastError: ti.LastError})
		}
	}
	return out
}

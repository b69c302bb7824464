package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/luafw/luafw/config"
	"github.com/luafw/luafw/daemon/observe"
	"github.com/luafw/luafw/host/state"
)

// outputs are what a run writes besides verdicts: decision events, packet
// captures (observe) and the saved state maps. They follow the
// configuration the daemon started with; a reload keeps them.
type outputs struct {
	// obs is nil when events and capture are off. Atomic: the metrics
	// server may read it before Run sets it.
	obs       atomic.Pointer[observe.Observer]
	obsCancel context.CancelFunc
	stateFile string
	saveEvery time.Duration
}

// startOutputs opens the event and capture files and restores the saved
// state, before the first packet is queued. The writers outlive the queue
// readers: stopOutputs ends them after the last packet.
func (d *Daemon) startOutputs(ctx context.Context) error {
	obs, err := observe.New(d.cfg, d.log)
	if err != nil {
		return err
	}
	if obs != nil {
		octx, cancel := context.WithCancel(context.Background())
		obs.Start(octx)
		d.out.obsCancel = cancel
		d.out.obs.Store(obs)
	}
	if s := d.cfg.State; s != nil {
		d.out.stateFile, d.out.saveEvery = d.cfg.Resolve(s.File), time.Duration(s.SaveEvery)
		if d.out.saveEvery == 0 {
			d.out.saveEvery = config.DefaultSaveEvery
		}
		d.restoreState()
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			t := time.NewTicker(d.out.saveEvery)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					if err := d.saveState(); err != nil {
						d.log.Error("saving state", "file", d.out.stateFile, "err", err)
					}
				}
			}
		}()
	}
	return nil
}

// stopOutputs saves the state a last time and lets the writers finish.
// Called once the queue readers have stopped.
func (d *Daemon) stopOutputs() {
	if d.out.stateFile != "" {
		if err := d.saveState(); err != nil {
			d.log.Error("saving state at shutdown", "file", d.out.stateFile, "err", err)
		} else {
			d.log.Info("state saved", "file", d.out.stateFile)
		}
	}
	if obs := d.out.obs.Load(); obs != nil {
		d.out.obsCancel()
		obs.Wait()
		st := obs.Stats()
		d.log.Info("event and capture files closed", "events_written", st.Events.Written, "events_suppressed", st.Events.Suppressed,
			"events_lost", st.Events.Lost, "packets_captured", st.Capture.Written, "captures_lost", st.Capture.Lost)
	}
}

// restoreState reads the state file. A missing file is a first start; a
// file that cannot be used is reported, moved aside to FILE.corrupt (so
// the next save does not destroy it) and otherwise ignored: it never keeps
// the firewall from starting.
func (d *Daemon) restoreState() {
	path := d.out.stateFile
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		d.log.Info("no saved state yet", "file", path)
		return
	}
	if err != nil {
		d.log.Error("cannot read the saved state; starting without it", "file", path, "err", err)
		return
	}
	res, err := d.eng.State().Restore(f)
	f.Close()
	if errors.Is(err, state.ErrBadFile) {
		aside := path + ".corrupt"
		d.log.Error("the saved state file is unusable; starting without it and moving it aside", "file", path, "moved_to", aside, "err", err)
		if err := os.Rename(path, aside); err != nil {
			d.log.Error("moving the state file aside", "err", err)
		}
		return
	}
	if err != nil {
		d.log.Error("restoring state stopped part way", "file", path, "err", err)
	}
	d.log.Info("state restored", "file", path, "saved", res.Saved, "maps", res.Maps, "entries", res.Entries,
		"expired_dropped", res.Expired, "counters", res.Counters)
}

// saveState writes the state file atomically: a temporary file in the
// same directory, synced, then renamed over the old one.
func (d *Daemon) saveState() error {
	path := d.out.stateFile
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if err := d.eng.State().Save(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("replacing %s: %w", path, err)
	}
	return nil
}

// keepOutputs keeps the running events, capture and state settings over a
// reload (they change on restart). Called with mu held.
func (d *Daemon) keepOutputs(cfg *config.File) {
	if !reflect.DeepEqual(cfg.Events, d.cfg.Events) || !reflect.DeepEqual(cfg.Capture, d.cfg.Capture) || !reflect.DeepEqual(cfg.State, d.cfg.State) {
		d.log.Warn("events, capture and state settings change only on restart; keeping the running ones")
	}
	cfg.Events, cfg.Capture, cfg.State = d.cfg.Events, d.cfg.Capture, d.cfg.State
}

// outputsCollector reports the event and capture counters to Prometheus.
type outputsCollector struct {
	d                *Daemon
	events, captured *prometheus.Desc
}

func newOutputsCollector(d *Daemon) *outputsCollector {
	return &outputsCollector{d: d,
		events: prometheus.NewDesc("luafw_events_total",
			"Decision events: written, suppressed (over events.rate) or lost (the writer was behind).", []string{"result"}, nil),
		captured: prometheus.NewDesc("luafw_captured_packets_total",
			"Packets for the capture file: written, or lost (the writer was behind).", []string{"result"}, nil),
	}
}

func (c *outputsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.events
	ch <- c.captured
}

func (c *outputsCollector) Collect(ch chan<- prometheus.Metric) {
	obs := c.d.out.obs.Load()
	if obs == nil {
		return
	}
	st := obs.Stats()
	for result, n := range map[string]uint64{"written": st.Events.Written, "suppressed": st.Events.Suppressed, "lost": st.Events.Lost} {
		ch <- prometheus.MustNewConstMetric(c.events, prometheus.CounterValue, float64(n), result)
	}
	for result, n := range map[string]uint64{"written": st.Capture.Written, "lost": st.Capture.Lost} {
		ch <- prometheus.MustNewConstMetric(c.captured, prometheus.CounterValue, float64(n), result)
	}
}

// collectorList is several collectors as one.
type collectorList []prometheus.Collector

func (l collectorList) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range l {
		c.Describe(ch)
	}
}

func (l collectorList) Collect(ch chan<- prometheus.Metric) {
	for _, c := range l {
		c.Collect(ch)
	}
}

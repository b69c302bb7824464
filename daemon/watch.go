package daemon

import (
	"context"
	"fmt"
	"time"
)

// tableCheckInterval is how often a running daemon compares its tables in
// the kernel with what it installed.
const tableCheckInterval = time.Second

// watchTables notices when someone else changes or removes our tables (an
// `nft flush ruleset` by a configuration tool, a hand-typed `nft delete
// table`) and puts them back, until ctx ends.
//
// Restoring, rather than exiting, is deliberate: the queue rules carry
// --queue-bypass, so a daemon that exits leaves traffic flowing unfiltered
// until something restarts it, and a restart would do what the restore
// does, later. The restore is logged as an error and counted
// (luafw_tables_restored_total) so the fight with the other tool is seen.
// A restore that fails stops the daemon.
func (d *Daemon) watchTables(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := d.checkTables(ctx); err != nil {
			d.fail(err)
			return
		}
	}
}

// checkTables restores our tables if they changed behind our back.
func (d *Daemon) checkTables(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	diff, err := d.tables.Verify(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn("could not read our tables back", "table", d.rules.Table, "err", err)
		}
		return nil
	}
	if diff == "" {
		return nil
	}
	d.restored.Add(1)
	d.log.Error("our nftables tables were changed or removed by someone else; restoring them",
		"table", d.rules.Table, "changes", diff)
	if err := d.tables.Restore(ctx); err != nil {
		return fmt.Errorf("restoring our tables: %w", err)
	}
	d.log.Info("tables restored", "table", d.rules.Table)
	return nil
}

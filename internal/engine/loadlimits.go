package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/luafw/luafw/internal/watchdog"
)

// Limits on the files a plugin or the configuration names (issue 18): a
// file is read only up to its limit, so a sparse file of 64 GiB costs what
// the limit does. docs/lua-api.md ("Limits at a glance") lists them.
const (
	// MaxPluginFileSize bounds a plugin's source (File, or Source). A
	// larger one is refused with the file and the limit; past the limit
	// nothing is read.
	MaxPluginFileSize = 4 << 20
	// MaxListFileSize bounds a list file read by net.load; a regular file
	// larger than that is refused before a byte is read.
	MaxListFileSize = 64 << 20
	// MaxListEntries bounds the entries (prefixes) of one list file: 2e6
	// prefixes are about 64 MiB of Go heap while the set is built.
	MaxListEntries = 2_000_000
	// listCheckEvery is how many lines net.load reads between two looks at
	// the load budget and the heap watch.
	listCheckEvery = 4096
)

// ReadLimited reads a whole file of at most limit bytes; what names it in
// the error. A regular file whose size says it is larger is refused before
// a byte is read; any other stops at limit+1 bytes. The engine reads plugin
// files with it, and the configuration and `luafw test` their own files.
func ReadLimited(path string, limit int64, what string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() && st.Size() > limit {
		return nil, tooLarge(what, limit)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, tooLarge(what, limit)
	}
	return b, nil
}

func tooLarge(what string, limit int64) error {
	return fmt.Errorf("%s larger than the limit of %d bytes (%d MiB)", what, limit, limit>>20)
}

// loadCut is a parse, compile or list read stopped by its load context.
type loadCut struct{ reason string }

func (c *loadCut) Error() string { return c.reason }

// cutReason says why a load context ended: its budget, the heap watch, or
// the caller (a signal, the daemon stopping).
func cutReason(ctx context.Context, parent context.Context, what string, budget time.Duration) string {
	switch {
	case parent != nil && parent.Err() != nil:
		return fmt.Sprintf("%s cancelled: %v", what, context.Cause(parent))
	case context.Cause(ctx) == watchdog.ErrMemoryCeiling:
		return what + " cut off: the process is near its memory ceiling"
	default:
		return fmt.Sprintf("%s did not finish within %v", what, budget)
	}
}

// loadCheck is the check parse.ParseInterruptible and
// lua.CompileInterruptible call: an error once ctx has ended.
func loadCheck(ctx, parent context.Context, what string) func() error {
	return func() error {
		if ctx.Err() == nil {
			return nil
		}
		return &loadCut{reason: cutReason(ctx, parent, what, loadBudget)}
	}
}

// isLoadCut reports whether err is a loadCut.
func isLoadCut(err error) bool {
	var c *loadCut
	return errors.As(err, &c)
}

// topLevelContext is the load context of a plugin's top-level run: the load
// budget, the heap watch, and for the probe at Prepare the caller's context
// (a signal or a stopping daemon ends the run). Workers' states are built
// under the budget alone.
func (e *Engine) topLevelContext(p *plugin, w *Worker) (context.Context, context.CancelFunc) {
	if w == nil && p.prepareCtx != nil {
		return e.wd.LoadContextIn(p.prepareCtx, loadBudget)
	}
	return e.wd.LoadContext(loadBudget)
}

package engine

import (
	"os"
	"path/filepath"
	"testing"
)

// TestRollbackRunsTheOldCodeNotTheFile: a rollback (Commit of the set a
// Commit replaced) brings back the code that ran, even though its file on
// disk now holds other text.
func TestRollbackRunsTheOldCodeNotTheFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "p.lua")
	write := func(code string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(code), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`fw.register{hook="input", fn=function() return fw.DROP end}`)
	e, _ := newTestEngine(t)
	specs := []PluginSpec{{File: file}}
	mustLoad(t, e, specs...)
	w := e.NewWorker()
	defer w.Close()
	data := tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, 0)
	run := func() Verdict { return w.Run(&Packet{Hook: Input, Data: data}).Verdict }
	if v := run(); v != Drop {
		t.Fatalf("v1: %v, want drop", v)
	}

	write(`fw.register{hook="forward", priority="raw", fn=function() return fw.REJECT end}
fw.register{hook="input", fn=function() return fw.REJECT end}`)
	next, err := e.Prepare(specs)
	if err != nil {
		t.Fatal(err)
	}
	if v := run(); v != Drop {
		t.Fatalf("Prepare changed the running set: %v", v)
	}
	if got := next.HookPriorities()[Forward]; len(got) != 1 || got[0] != PriorityRaw {
		t.Errorf("prepared priorities of forward: %v, want [%d]", got, PriorityRaw)
	}
	if got := e.HookPriorities()[Forward]; len(got) != 0 {
		t.Errorf("running priorities changed before Commit: %v", got)
	}
	gen := e.Generation()
	prev := e.Commit(next)
	if v := run(); v != Reject {
		t.Fatalf("v2: %v, want reject", v)
	}

	// The rule install "failed": roll back. The file still holds v2.
	e.Commit(prev)
	if v := run(); v != Drop {
		t.Fatalf("after rollback: %v, want the old code's drop", v)
	}
	if got := e.HookPriorities()[Forward]; len(got) != 0 {
		t.Errorf("after rollback forward has callbacks at %v", got)
	}
	if e.Generation() <= gen {
		t.Errorf("generation %d after rollback, want above %d", e.Generation(), gen)
	}
	// A worker that never saw v2 keeps working too.
	if d := e.Process(&Packet{Hook: Input, Data: data}); d.Verdict != Drop {
		t.Errorf("pooled worker after rollback: %v", d.Verdict)
	}
}

// TestPrepareFailureChangesNothing: a broken set is refused by Prepare.
func TestPrepareFailureChangesNothing(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e, src("ok", `fw.register{hook="input", fn=function() return fw.DROP end}`))
	gen := e.Generation()
	if _, err := e.Prepare([]PluginSpec{src("bad", "fw.register{")}); err == nil {
		t.Fatal("Prepare accepted a syntax error")
	}
	if e.Generation() != gen {
		t.Error("a failed Prepare changed the generation")
	}
}

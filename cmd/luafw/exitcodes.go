package main

import (
	"fmt"
	"strings"
)

// luafw's exit codes. exitCodes describes them; README.md and
// docs/operating.md carry the same table (a test compares them).
const (
	exitOK       = 0
	exitFailed   = 1 // the command failed (see exitCodes)
	exitUsage    = 2
	exitNoDaemon = 3 // nothing answers on the control socket
	exitRunning  = 4 // luafw run: another luafw already runs in this network namespace
)

// exitCode is one row of the exit code table.
type exitCode struct {
	code    int
	short   string // for the one-line summary of luafw --help
	meaning string
}

// exitCodes is the table of exit codes, as the man page, README.md and
// docs/operating.md show it.
func exitCodes() []exitCode {
	return []exitCode{
		{exitOK, "ok", "success: the command did what it was asked; `luafw run` stopped cleanly (SIGTERM, SIGINT); a trace ended or was detached"},
		{exitFailed, "failed", "failure: `luafw run` could not start (configuration, plugins, kernel support, privileges, metrics address, a state or events file another daemon holds) or stopped because a queue reader failed; the daemon answered with an error (a reload that failed keeps the running set); `check` found errors; `test` had a failing test"},
		{exitUsage, "usage", "usage mistake: unknown command or flag, a missing or extra argument, a bad flag value"},
		{exitNoDaemon, "no daemon", "no daemon answers on the control socket (`reload`, `status`, `state`, `trace`, `top`)"},
		{exitRunning, "already running", "`luafw run`: another luafw already runs in this network namespace; nothing was touched"},
	}
}

// exitSummary is the exit codes in one line, for luafw --help.
func exitSummary() string {
	var words []string
	for _, e := range exitCodes() {
		words = append(words, fmt.Sprintf("%d %s", e.code, e.short))
	}
	return strings.Join(words, ", ")
}

// exitTableMarkdown is the exit code table as README.md and
// docs/operating.md carry it.
func exitTableMarkdown() string {
	var b strings.Builder
	b.WriteString("| exit code | meaning |\n|---|---|\n")
	for _, e := range exitCodes() {
		fmt.Fprintf(&b, "| %d | %s |\n", e.code, e.meaning)
	}
	return b.String()
}

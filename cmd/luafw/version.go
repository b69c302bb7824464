package main

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"
)

// version is set at build time: go build -ldflags "-X main.version=$(git
// describe --always --dirty)" (the Makefile does). Without it the build's
// VCS stamp stands in.
var version string

// buildVersion is the version this binary reports.
func buildVersion() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if modified == "true" {
			rev += "-dirty"
		}
		return rev
	}
	if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

func cmdVersion(_ context.Context, _ []string, stdout, _ io.Writer) int {
	fmt.Fprintf(stdout, "luafw %s\n", buildVersion())
	return 0
}

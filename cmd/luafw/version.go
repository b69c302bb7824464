package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
)

// version is set at build time: the Makefile passes -ldflags "-X
// main.version=$(git describe --tags --always --dirty)", which on the
// commit tagged v0.1.0 is "v0.1.0". The git tag is the one place a release's
// version is written. Builds without the flag, such as
// `go install github.com/luafw/luafw/cmd/luafw@v0.1.0`, report the module
// version the go command stamped into the binary instead (versionFrom).
var version string

// buildVersion is the version this binary reports.
func buildVersion() string {
	bi, _ := debug.ReadBuildInfo()
	return versionFrom(version, bi)
}

// versionFrom picks the version to report: the -X flag's, else the main
// module's version from the build info (v0.1.0 for `go install ...@v0.1.0`,
// a pseudo-version for a build in a git checkout), else the VCS revision,
// else "devel".
func versionFrom(ldflag string, bi *debug.BuildInfo) string {
	if ldflag != "" {
		return ldflag
	}
	if bi == nil {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
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
	return "devel"
}

func versionCommand() *command {
	return &command{
		name:    "version",
		args:    "",
		summary: "print the build's version (also luafw --version)",
		about:   `Prints "luafw" and the version of this build: the release tag, else the commit.`,
		define: func(*flag.FlagSet) runner {
			return func(_ context.Context, args []string, stdout, stderr io.Writer) int {
				if code := wantArgs(stderr, "version", args); code != exitOK {
					return code
				}
				fmt.Fprintf(stdout, "luafw %s\n", buildVersion())
				return exitOK
			}
		},
	}
}

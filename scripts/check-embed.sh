#!/usr/bin/env bash
# check-embed.sh: proves a Go program outside this repository can import
# luafw. It copies examples/embed (without its tests) into a fresh module,
# example.com/embedcheck, whose only link to this checkout is one replace in
# that module's own go.mod; tidies, builds and runs it, and checks the
# decisions it prints. It also fails if this checkout's go.mod has a replace
# directive: replaces of a dependency are ignored by its importers, so the
# module must build without one.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

if grep -Eq '^[[:space:]]*replace([[:space:]]|\()' "$root/go.mod"; then
	echo "check-embed: $root/go.mod has a replace directive; importers of github.com/luafw/luafw would not see it:" >&2
	grep -En '^[[:space:]]*replace' "$root/go.mod" >&2
	exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for f in "$root"/examples/embed/*.go; do
	case $f in *_test.go) continue ;; esac
	cp "$f" "$tmp/"
done
goversion=$(sed -n 's/^go \([0-9.]*\).*/\1/p' "$root/go.mod")
cat >"$tmp/go.mod" <<GOMOD
module example.com/embedcheck

go $goversion

require github.com/luafw/luafw v0.0.0

replace github.com/luafw/luafw => $root
GOMOD

cd "$tmp"
export GOWORK=off GOFLAGS=-mod=mod
go mod tidy
go build -o embedcheck .
out=$(./embedcheck)
printf '%s\n' "$out"

fail=0
for want in \
	"chain forward: priority -150 go/mgmt-allow" \
	"chain forward: priority 0 guard/ssh-to-servers-only" \
	"10.0.1.5 -> 10.0.2.10:22  accept" \
	"10.0.1.5 -> 10.0.2.99:22  drop   by guard" \
	"10.0.9.7 -> 10.0.2.99:22  stop   by go tags [mgmt]" \
	"ssh to a non-server"; do
	if ! grep -qF -- "$want" <<<"$out"; then
		echo "check-embed: output lacks: $want" >&2
		fail=1
	fi
done
[ "$fail" = 0 ] || exit 1
echo "check-embed: ok (example.com/embedcheck imports github.com/luafw/luafw with no replace in luafw's go.mod)"

#!/usr/bin/env bash
# check-install.sh: proves that
#     go install github.com/luafw/luafw/cmd/luafw@v0.1.0
# works for anyone: the module builds with no replace, from a module proxy,
# and the binary reports v0.1.0. It serves this checkout's committed tree
# (git archive HEAD; uncommitted changes are not in it) as
# github.com/luafw/luafw v0.1.0 from a local file proxy, installs from it
# with a module cache of its own, and runs luafw --version. Dependencies
# come from the machine's module cache when it has them, else from the Go
# module proxy, at the versions go.sum names.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mod=github.com/luafw/luafw
ver=${CHECK_INSTALL_VERSION:-v0.1.0}
xmod=golang.org/x/mod@v0.41.0

tmp=$(mktemp -d)
cleanup() {
	# The module cache is read-only; go clean can remove it.
	[ -d "$tmp/modcache" ] && GOMODCACHE="$tmp/modcache" GOFLAGS= go clean -modcache 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
sysmodcache=$(go env GOMODCACHE)
upstream=${GOPROXY_UPSTREAM:-https://proxy.golang.org}

# 1. The module's files as a release would have them.
mkdir -p "$tmp/src" "$tmp/proxy" "$tmp/bin"
git -C "$root" archive --format=tar HEAD | tar -x -C "$tmp/src"
if grep -Eq '^[[:space:]]*replace([[:space:]]|\()' "$tmp/src/go.mod"; then
	echo "check-install: go.mod has a replace directive, which go install ...@version refuses" >&2
	exit 1
fi
when=$(git -C "$root" log -1 --format=%cI HEAD)

# 2. The proxy directory, made by scripts/modzip.go in a module of its own.
mkdir -p "$tmp/modzip"
cp "$root/scripts/modzip.go" "$tmp/modzip/main.go"
sed -i '/^\/\/go:build ignore$/d' "$tmp/modzip/main.go"
(
	cd "$tmp/modzip"
	export GOWORK=off GOFLAGS=-mod=mod
	printf 'module modzip\n\ngo 1.22\n' >go.mod
	go get "$xmod" >/dev/null 2>&1 || go get "$xmod"
	go run . -src "$tmp/src" -module "$mod" -version "$ver" -time "$when" -out "$tmp/proxy"
)

# 3. go install from the proxy, into an empty module cache (the machine's
# could hold another github.com/luafw/luafw at this version).
GOWORK=off GOFLAGS= GOTOOLCHAIN=local \
	GOMODCACHE="$tmp/modcache" GOBIN="$tmp/bin" \
	GOPROXY="file://$tmp/proxy,file://$sysmodcache/cache/download,$upstream" \
	GONOSUMDB=$mod GOPRIVATE= GONOPROXY= \
	go install "$mod/cmd/luafw@$ver"

# 4. The version it reports.
got=$("$tmp/bin/luafw" --version)
echo "$got"
if [ "$got" != "luafw $ver" ]; then
	echo "check-install: luafw --version printed \"$got\", want \"luafw $ver\"" >&2
	exit 1
fi
echo "check-install: ok (go install $mod/cmd/luafw@$ver from a proxy, no replace)"

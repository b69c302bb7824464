#!/usr/bin/env bash
# release.sh makes the files of a release in dist/release:
#     luafw-VERSION-linux-amd64, luafw-VERSION-linux-arm64   static, stripped binaries
#     luafw_DEBVERSION-1_amd64.deb, ..._arm64.deb            Debian packages
#     SHA256SUMS                                             of all of the above
#     RELEASE-NOTES.md                                       CHANGELOG.md's section for VERSION
# Each binary is built twice, the second time with an empty build cache, and
# the two must be identical; each package is built twice and compared too.
#     scripts/release.sh -v v0.2.0 -n bin/tools/nfpm-v2.48.0/nfpm
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version= nfpm=
while getopts v:n: opt; do
	case $opt in
	v) version=$OPTARG ;;
	n) nfpm=$OPTARG ;;
	*) exit 2 ;;
	esac
done
if ! [[ $version =~ ^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] || [ -z "$nfpm" ]; then
	echo "usage: release.sh -v vX.Y.Z -n NFPM (a semantic version tag, not \"$version\")" >&2
	exit 2
fi
cd "$root"
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
	echo "release: the work tree has uncommitted changes; the binaries would say so (vcs.modified)" >&2
	exit 1
fi
if [ "$(git describe --tags --exact-match HEAD 2>/dev/null)" != "$version" ]; then
	echo "release: note: HEAD is not tagged $version (git tag $version, then push the tag with the release)" >&2
fi

# The release notes: CHANGELOG.md from "## [VERSION]" to the next "## [".
out=dist/release
rm -rf "$out"
mkdir -p "$out"
awk -v v="$version" '
	index($0, "## [" v "]") == 1 { on = 1; next }
	on && /^## \[/ { exit }
	on { print }
' CHANGELOG.md | sed -e '/./,$!d' >"$out/RELEASE-NOTES.md"
if [ ! -s "$out/RELEASE-NOTES.md" ]; then
	echo "release: CHANGELOG.md has no section \"## [$version]\" (move [Unreleased] there first)" >&2
	exit 1
fi

tmp=$(mktemp -d)
cleanup() {
	[ -d "$tmp/gocache" ] && GOCACHE="$tmp/gocache" go clean -cache 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
for arch in amd64 arm64; do
	bin=$out/luafw-$version-linux-$arch
	scripts/build.sh -v "$version" -a "$arch" -o "$bin"
	GOCACHE=$tmp/gocache scripts/build.sh -v "$version" -a "$arch" -o "$tmp/luafw-$arch"
	if ! cmp -s "$bin" "$tmp/luafw-$arch"; then
		echo "release: linux/$arch: two builds of the same tree differ:" >&2
		sha256sum "$bin" "$tmp/luafw-$arch" >&2
		exit 1
	fi
	deb=$(scripts/package.sh -v "$version" -a "$arch" -o "$out" -b "$bin" -n "$nfpm")
	again=$(scripts/package.sh -v "$version" -a "$arch" -o "$tmp/deb" -b "$tmp/luafw-$arch" -n "$nfpm")
	if ! cmp -s "$deb" "$again"; then
		echo "release: $arch: two builds of the package differ" >&2
		exit 1
	fi
	echo "release: linux/$arch: $(basename "$bin"), $(basename "$deb") (each built twice, identical)"
done
(cd "$out" && sha256sum luafw-* luafw_*.deb >SHA256SUMS)
echo "release: $out:"
(cd "$out" && ls -l && cat SHA256SUMS)

#!/usr/bin/env bash
# package.sh builds the luafw Debian package for one architecture with nfpm
# (dist/nfpm.yaml):
#     scripts/package.sh -v v0.1.0 -a amd64 -o dist/release [-b luafw-binary] [-n nfpm]
# -b packs a binary built already (make release builds each one once, and
# checks it builds the same twice); without it the binary is built here,
# static and stripped (scripts/build.sh). The man pages and completions come
# from the binary itself (luafw man, luafw completion): the host's binary
# when -a is another architecture. SOURCE_DATE_EPOCH (default: the HEAD
# commit's time) dates the files, so the same tree gives the same package.
# Prints the package's path.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version= arch= out= bin= nfpm=${NFPM:-}
while getopts v:a:o:b:n: opt; do
	case $opt in
	v) version=$OPTARG ;;
	a) arch=$OPTARG ;;
	o) out=$OPTARG ;;
	b) bin=$OPTARG ;;
	n) nfpm=$OPTARG ;;
	*) exit 2 ;;
	esac
done
if [ -z "$version" ] || [ -z "$arch" ] || [ -z "$out" ] || [ -z "$nfpm" ]; then
	echo "usage: package.sh -v VERSION -a ARCH -o OUTDIR -n NFPM [-b BINARY]" >&2
	exit 2
fi
case $arch in amd64 | arm64) ;; *) echo "package.sh: architecture $arch: want amd64 or arm64" >&2; exit 2 ;; esac

# debversion turns a Go version into a Debian upstream version that sorts
# the same way: v0.2.0 -> 0.2.0, v0.2.0-rc.1 -> 0.2.0~rc.1 (before 0.2.0),
# v0.1.0-5-g1234abc (git describe) -> 0.1.0+5.g1234abc (after 0.1.0), a
# bare commit -> 0.0.0+git.1234abc; -dirty -> +dirty.
debversion() {
	local v=${1#v} dirty=
	case $v in *-dirty) v=${v%-dirty} dirty=+dirty ;; esac
	if [[ $v =~ ^([0-9][^-]*)-([0-9]+)-g([0-9a-f]+)$ ]]; then
		v="${BASH_REMATCH[1]}+${BASH_REMATCH[2]}.g${BASH_REMATCH[3]}"
	elif [[ $v =~ ^[0-9] ]]; then
		v=${v//-/\~}
	else
		v="0.0.0+git.${v//-/.}"
		dirty=${dirty/+/.}
	fi
	echo "$v$dirty"
}

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct HEAD)}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$out"
out=$(cd "$out" && pwd)

# 1. The binary, and one this machine can run for the generated files.
if [ -z "$bin" ]; then
	bin=$stage/build/luafw
	"$root/scripts/build.sh" -v "$version" -a "$arch" -o "$bin"
fi
install -m 0755 "$bin" "$stage/luafw"
gen=$stage/luafw
if [ "$arch" != "$(go env GOHOSTARCH)" ]; then
	gen=$stage/build/luafw-host
	"$root/scripts/build.sh" -v "$version" -a "$(go env GOHOSTARCH)" -o "$gen"
fi

# 2. Files made from the binary: man pages and completions.
mkdir -p "$stage/man" "$stage/completion"
"$gen" man --dir "$stage/man"
gzip -9n "$stage/man/luafw.8" "$stage/man/luafw.yaml.5"
"$gen" completion bash >"$stage/completion/luafw.bash"
"$gen" completion zsh >"$stage/completion/_luafw"
"$gen" completion fish >"$stage/completion/luafw.fish"

# 3. The unit with the package's paths (as make install PREFIX=/usr).
sed -e 's|/usr/local/bin/luafw|/usr/bin/luafw|g' \
	-e 's|^Documentation=.*|Documentation=man:luafw(8) file:///usr/share/doc/luafw/operating.md.gz|' \
	-e 's|`make install` puts it in|The Debian package installs it in /lib/systemd/system;|' \
	-e 's|^# \$(PREFIX)/lib/systemd/system; docs/operating.md|# docs/operating.md|' \
	"$root/dist/luafw.service" >"$stage/luafw.service"
if grep -q /usr/local "$stage/luafw.service"; then
	echo "package.sh: the unit still names /usr/local:" >&2
	grep -n /usr/local "$stage/luafw.service" >&2
	exit 1
fi

# 4. /usr/share/luafw: plugins without their tests and test data, the
# example lists; editor files when there are any.
mkdir -p "$stage/share/plugins/lists"
install -m 0644 "$root/plugins/README.md" "$stage/share/plugins/"
for f in "$root"/plugins/*.lua; do
	case $f in *_test.lua) continue ;; esac
	install -m 0644 "$f" "$stage/share/plugins/"
done
install -m 0644 "$root"/plugins/lists/* "$stage/share/plugins/lists/"
if [ -d "$root/dist/editor" ] && [ -n "$(ls -A "$root/dist/editor")" ]; then
	mkdir -p "$stage/share/editor"
	cp -R "$root/dist/editor/." "$stage/share/editor/"
	find "$stage/share/editor" -type d -exec chmod 0755 {} + -o -type f -exec chmod 0644 {} +
fi

# 5. /usr/share/doc/luafw: the guides (compressed above 4 kB, as
# dh_compress does), the upstream changelog, the alert rules and dashboard.
mkdir -p "$stage/doc"
install -m 0644 "$root/README.md" "$root/NOTICE" "$root"/docs/*.md "$stage/doc/"
find "$stage/doc" -maxdepth 1 -type f -size +4k -exec gzip -9n {} +
install -m 0644 "$root/CHANGELOG.md" "$stage/doc/changelog"
gzip -9n "$stage/doc/changelog"
for f in "$root"/dist/prometheus/luafw-alerts.yaml "$root"/dist/grafana/*.json; do
	[ -e "$f" ] && install -D -m 0644 "$f" "$stage/doc/examples/$(basename "$f")"
done
debver=$(debversion "$version")
{
	echo "luafw ($debver-1) unstable; urgency=medium"
	echo
	echo "  * Upstream release $version; its changes are in changelog.gz"
	echo "    (CHANGELOG.md)."
	echo
	echo " -- luafw maintainers <luafw@users.noreply.github.com>  $(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")"
} >"$stage/changelog.Debian"
gzip -9n "$stage/changelog.Debian"
chmod 0644 "$stage/changelog.Debian.gz"
find "$stage/share" "$stage/doc" -type d -exec chmod 0755 {} +
# nfpm dates the files of trees by their mtime: give every file the
# source's date.
find "$stage" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

# 6. The package.
deb=$out/luafw_${debver}-1_${arch}.deb
(
	cd "$root"
	LUAFW_STAGE=$stage LUAFW_ARCH=$arch LUAFW_DEB_VERSION=$debver \
		"$nfpm" package --config dist/nfpm.yaml --packager deb --target "$deb" >/dev/null
)
echo "$deb"

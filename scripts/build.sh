#!/usr/bin/env bash
# build.sh builds a release binary of luafw: static (CGO off), stripped
# (-s -w), without local paths (-trimpath) or a build id, with the version
# stamped in (luafw --version, luafw_build_info). The same tree and Go
# version give the same bytes (make release checks it).
#     scripts/build.sh -v v0.1.0 -a arm64 -o dist/release/luafw-v0.1.0-linux-arm64
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version= arch= out=
while getopts v:a:o: opt; do
	case $opt in
	v) version=$OPTARG ;;
	a) arch=$OPTARG ;;
	o) out=$OPTARG ;;
	*) exit 2 ;;
	esac
done
if [ -z "$version" ] || [ -z "$arch" ] || [ -z "$out" ]; then
	echo "usage: build.sh -v VERSION -a ARCH -o OUTPUT" >&2
	exit 2
fi
cd "$root"
CGO_ENABLED=0 GOOS=linux GOARCH=$arch GOFLAGS=-mod=readonly \
	go build -trimpath -ldflags "-s -w -buildid= -X main.version=$version" -o "$out" ./cmd/luafw

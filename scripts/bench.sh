#!/usr/bin/env bash
# bench.sh: `make bench` — the end-to-end benchmark (bench/). Builds a lab of
# network namespaces, runs the kernel alone, a plain go-nfqueue consumer,
# luafw's batched reader and luafw itself in its router, floods it from the
# client, and prints a table (JSON in bench-results.json). Root only; all
# traffic stays inside the lab. Extra arguments go to the bench program
# (e.g. scripts/bench.sh -duration 3s -out /tmp/b.json; scripts/bench.sh -sweep
# runs only the sweep at fixed offered rates, bench/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "bench: needs root (network namespaces, nftables, NFQUEUE): run make bench as root" >&2
  exit 1
fi
go build -o bin/luafw ./cmd/luafw
go build -o bin/nfqbaseline ./cmd/nfqbaseline
go build -o bin/luafw-bench ./bench
iperf=iperf3
command -v iperf3 >/dev/null 2>&1 || { echo "bench: iperf3 missing (scripts/deps.sh installs it): skipping the TCP rows" >&2; iperf=; }
exec bin/luafw-bench -luafw bin/luafw -nfqbaseline bin/nfqbaseline -iperf3 "$iperf" -repo . "$@"

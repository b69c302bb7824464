#!/usr/bin/env bash
# demo.sh: `make demo` — builds a lab of network namespaces, runs luafw in its
# router with examples/demo, sends traffic through it and reports. Root only;
# nothing is sent outside the lab's namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "demo: needs root (network namespaces, nftables, NFQUEUE): run make demo as root" >&2
  exit 1
fi
go run ./examples/demo -luafw bin/luafw -config examples/demo/luafw.yaml

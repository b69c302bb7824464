#!/usr/bin/env bash
# deps.sh installs the packages luafw's kernel tests and demo need, when they
# are missing and we are root. Without root it only reports what is missing.
set -euo pipefail
need=()
command -v iptables  >/dev/null 2>&1 || need+=(iptables)
command -v nft       >/dev/null 2>&1 || need+=(nftables)
command -v conntrack >/dev/null 2>&1 || need+=(conntrack)
command -v ip        >/dev/null 2>&1 || need+=(iproute2)
command -v iperf3    >/dev/null 2>&1 || need+=(iperf3)
command -v tcpdump   >/dev/null 2>&1 || need+=(tcpdump)
# cgroup tests: a mount namespace of their own (unshare), shells (bash)
command -v unshare   >/dev/null 2>&1 || need+=(util-linux)
command -v bash      >/dev/null 2>&1 || need+=(bash)
# fleet tests: shared state (Redis) and the HA pair (VRRP, conntrack sync)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || need+=(redis-sentinel)
command -v keepalived   >/dev/null 2>&1 || need+=(keepalived)
command -v conntrackd   >/dev/null 2>&1 || need+=(conntrackd)
# the package test (lintian checks the .deb) and the alert rules' tests
# (promtool comes with Debian's prometheus package; its service is not
# started, see policy-rc.d below)
command -v lintian   >/dev/null 2>&1 || need+=(lintian)
command -v promtool  >/dev/null 2>&1 || need+=(prometheus)
# luafw man and luafw completion: the pages are linted, the scripts parsed
command -v mandoc >/dev/null 2>&1 || need+=(mandoc)
command -v zsh    >/dev/null 2>&1 || need+=(zsh)
command -v fish   >/dev/null 2>&1 || need+=(fish)
# plugin lint: the shipped plugins and docs/examples pass luacheck with the
# generated luafw standard (dist/editor)
command -v luacheck     >/dev/null 2>&1 || need+=(lua-check)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing ${need[*]} (not root: kernel tests will skip)" >&2
  exit 0
fi
echo "deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Installing redis-server, keepalived, conntrackd or prometheus must not start them in
# the machine's own namespace (conntrackd's default configuration would talk
# on the machine's network): the tests start their own, inside lab
# namespaces. policy-rc.d answering 101 tells the packages not to start
# services; ours is removed afterwards, one already there is left alone.
policy=/usr/sbin/policy-rc.d
ours=
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && ours=1
  trap '[ -n "$ours" ] && rm -f "$policy"' EXIT
fi
apt-get update -qq
apt-get install -y -qq "${need[@]}" >/dev/null

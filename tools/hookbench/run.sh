#!/usr/bin/env bash
# EMQX authz over HTTP: Gatehouse (cached and cache-miss) against a no-op echo
# handler, the server pinned to CPU 0 and wrk to CPU 1, in one run.
# Usage: tools/hookbench/run.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 1; }
bin=$(mktemp -d)/hookbench
go build -o "$bin" ./tools/hookbench
addr=127.0.0.1:18081
rps() { # mode script warmup
  taskset -c 0 "$bin" -mode "$1" -addr "$addr" >/dev/null 2>&1 &
  local pid=$!
  trap 'kill $pid 2>/dev/null || true' RETURN
  # The Gatehouse server computes 100k devices' grants before it listens.
  for _ in $(seq 1 1200); do curl -s -o /dev/null "http://$addr/" && break; sleep 0.1; done
  if [ "$3" = warm ]; then taskset -c 1 wrk -t1 -c32 -d2s -s "tools/hookbench/$2" "http://$addr/hooks/emqx/authz" >/dev/null; fi
  local out
  out=$(taskset -c 1 wrk -t1 -c32 -d"${secs}s" -s "tools/hookbench/$2" "http://$addr/hooks/emqx/authz")
  if grep -qE "Socket errors|Non-2xx" <<<"$out"; then echo "wrk reported errors for $1/$2:" >&2; echo "$out" >&2; exit 1; fi
  awk '/Requests\/sec/ {print $2}' <<<"$out"
  kill $pid; wait $pid 2>/dev/null || true
}
noop=$(rps noop cached.lua warm)
cached=$(rps gatehouse cached.lua warm)
miss=$(rps gatehouse miss.lua cold)
awk -v n="$noop" -v c="$cached" -v m="$miss" 'BEGIN {
  printf "noop echo handler:      %10.0f req/s\n", n
  printf "gatehouse, cached:      %10.0f req/s  (%.2fx noop)\n", c, c/n
  printf "gatehouse, cache miss:  %10.0f req/s  (%.2fx noop)\n", m, m/n
}'

#!/usr/bin/env bash
# EMQX authz over HTTP: Gatehouse (cached and cache-miss) against a no-op echo
# handler, the server pinned to CPU 0 and wrk to CPU 1, in one run.
# Usage: tools/hookbench/run.sh [seconds]
#        tools/hookbench/run.sh --check   # start and verify both servers, no wrk
#
# Each server listens on a free port it picks itself and reports it; before
# measuring, the script checks that the server answering on that port is the
# one it just started (pid and a nonce from /healthz) and that Gatehouse
# allows an authenticated request, and it fails if a server did not start.
set -euo pipefail
cd "$(dirname "$0")/../.."
check=false
if [ "${1:-}" = --check ]; then check=true; shift; fi
secs=${1:-10}
if ! $check; then
  command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 1; }
fi
work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
bin=$work/hookbench
go build -o "$bin" ./tools/hookbench
# Gatehouse's hooks are closed by default: wrk sends this secret (see *.lua).
HOOKBENCH_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
export HOOKBENCH_SECRET

# start MODE: runs the server on CPU 0; sets pid and addr.
start() {
  local mode=$1 nonce
  nonce=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  rm -f "$work/addr"
  taskset -c 0 "$bin" -mode "$mode" -addr 127.0.0.1:0 -addr-file "$work/addr" -nonce "$nonce" >"$work/$mode.log" 2>&1 &
  pid=$! # taskset execs the server: same pid
  # The Gatehouse server computes 100k devices' grants before it listens.
  for _ in $(seq 1 1200); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "hookbench -mode $mode exited before listening:" >&2; cat "$work/$mode.log" >&2; pid=; exit 1
    fi
    [ -s "$work/addr" ] && break
    sleep 0.1
  done
  [ -s "$work/addr" ] || { echo "hookbench -mode $mode did not listen within 120 s:" >&2; cat "$work/$mode.log" >&2; exit 1; }
  addr=$(cat "$work/addr")
  local want="hookbench pid=$pid nonce=$nonce" got
  got=$(curl -sS --max-time 5 "http://$addr/healthz" || true)
  if [ "$got" != "$want" ]; then
    echo "$addr answered \"$got\", not the hookbench just started ($want)" >&2; exit 1
  fi
  if [ "$mode" = gatehouse ]; then
    got=$(curl -sS --max-time 5 -H "X-Gatehouse-Hook-Secret: $HOOKBENCH_SECRET" -H 'Content-Type: application/json' \
      -d '{"clientid":"dev-000042","cert_common_name":"dev-000042","action":"publish","topic":"devices/dev-000042/telemetry/temp","qos":"1","retain":"false"}' \
      "http://$addr/hooks/emqx/authz" || true)
    case $got in *'"result":"allow"'*) ;; *) echo "gatehouse does not allow the benchmark's request: $got" >&2; exit 1 ;; esac
  fi
  echo "started hookbench -mode $mode, pid $pid, on $addr" >&2
}

stop() {
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
}

# rps MODE SCRIPT WARMUP: sets rate to the requests per second measured.
# Not run in a command substitution: a failure must reach the EXIT trap,
# which stops the server.
rps() {
  start "$1"
  if [ "$3" = warm ]; then taskset -c 1 wrk -t1 -c32 -d2s -s "tools/hookbench/$2" "http://$addr/hooks/emqx/authz" >/dev/null; fi
  local out
  out=$(taskset -c 1 wrk -t1 -c32 -d"${secs}s" -s "tools/hookbench/$2" "http://$addr/hooks/emqx/authz")
  if grep -qE "Socket errors|Non-2xx" <<<"$out"; then echo "wrk reported errors for $1/$2:" >&2; echo "$out" >&2; exit 1; fi
  # Still the server that was measured, alive to the end.
  kill -0 "$pid" 2>/dev/null || { echo "hookbench -mode $1 died during the run" >&2; cat "$work/$1.log" >&2; pid=; exit 1; }
  rate=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  stop
}

if $check; then
  for mode in noop gatehouse; do start "$mode"; stop; done
  echo "both servers start and answer as themselves" >&2
  exit 0
fi
rps noop cached.lua warm; noop=$rate
rps gatehouse cached.lua warm; cached=$rate
rps gatehouse miss.lua cold; miss=$rate
awk -v n="$noop" -v c="$cached" -v m="$miss" 'BEGIN {
  printf "noop echo handler:      %10.0f req/s\n", n
  printf "gatehouse, cached:      %10.0f req/s  (%.2fx noop)\n", c, c/n
  printf "gatehouse, cache miss:  %10.0f req/s  (%.2fx noop)\n", m, m/n
}'

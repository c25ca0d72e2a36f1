#!/usr/bin/env bash
# make bench: whole autoscaler cycles at 1,000, 10,000 and 100,000 active
# function versions on the local stack (see e2e/bench/main.go for what is
# measured). Servers already running are reused and left running; servers
# started here are stopped on exit. Extra arguments go to the bench, e.g.
#   e2e/bench.sh -sizes 1000,10000 -cycles 3
# Results: e2e/out/bench/bench.json, bench.svg, CPU and heap profiles of the
# function processes for the largest N, and their `go tool pprof -top`.
set -euo pipefail
cd "$(dirname "$0")/.."
STACK=e2e/stack/stack.sh

started=()
for s in cassandra vm; do
  if ! "$STACK" status "$s" >/dev/null 2>&1; then started+=("$s"); fi
done
cleanup() {
  local rc=$?
  for s in "${started[@]}"; do "$STACK" stop "$s" || true; done
  exit $rc
}
trap cleanup EXIT INT TERM
"$STACK" start cassandra
"$STACK" start vm
eval "$("$STACK" env)"

mkdir -p .cache/bin
go build -o .cache/bin/bench ./e2e/bench
.cache/bin/bench "$@"

# The profiles are where -out put them (e2e/out/bench by default).
out=e2e/out/bench
prev=
for a in "$@"; do
  case $prev in -out|--out) out=$a ;; esac
  case $a in -out=*|--out=*) out=${a#*=} ;; esac
  prev=$a
done
for p in "$out"/cpu-*.pprof; do
  [ -s "$p" ] || continue
  echo
  echo "== $(basename "$p"): where the CPU went"
  bin=bin/autoscaler-func
  case "$p" in *victoriametrics*) bin= ;; esac # symbols are in the profile
  go tool pprof -top -nodecount=25 $bin "$p" 2>/dev/null | sed -n '1,32p'
done

#!/usr/bin/env bash
# The main job (make demo): installs what is missing, starts the local
# stack, runs the scripted closed loop with a live table, writes
# e2e/out/demo.svg and e2e/out/decisions.log, and stops what it started on
# exit or Ctrl-C. Servers that were already running are left running.
set -euo pipefail
cd "$(dirname "$0")/.."
STACK=e2e/stack/stack.sh
started=()
for s in cassandra vm prom; do
  "$STACK" status "$s" >/dev/null 2>&1 || started+=("$s")
done
cleanup() {
  local rc=$?
  for s in "${started[@]}"; do "$STACK" stop "$s" >/dev/null 2>&1 || true; done
  exit $rc
}
trap cleanup EXIT INT TERM
"$STACK" start cassandra vm
eval "$("$STACK" env)"
go run ./e2e/demo "$@"

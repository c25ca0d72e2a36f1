#!/usr/bin/env bash
# Runs every test against the real local stack. Servers that were already
# running are reused and left running; servers this script started are
# stopped again on exit (by PID, through stack.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
STACK=e2e/stack/stack.sh

started=()
for s in cassandra vm prom; do
  if ! "$STACK" status "$s" >/dev/null 2>&1; then
    started+=("$s")
  fi
done
cleanup() {
  local rc=$?
  for s in "${started[@]}"; do "$STACK" stop "$s" || true; done
  exit $rc
}
trap cleanup EXIT INT TERM

"$STACK" start all
eval "$("$STACK" env)"

# A missing server fails the run instead of skipping tests.
export AUTOSCALER_REQUIRE_SERVERS=1

echo "== gofmt and go vet"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.cache/*'))
if [ -n "$unformatted" ]; then echo "gofmt needed: $unformatted"; exit 1; fi
go vet ./...

echo "== go test (unit, integration, e2e)"
go test -count=1 -timeout 60m ./... 2>&1 | tee .cache/test.log

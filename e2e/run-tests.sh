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
e2e/tidy-check.sh

mkdir -p .cache
# The closed-loop tests stop and restart servers (TSDB outage, Cassandra
# restart), so they run after every other package, alone.
pkgs=$(go list ./... | grep -v -e /e2e/closedloop -e /e2e/kncli)
echo "== go test: unit and integration"
go test -count=1 -timeout 30m $pkgs 2>&1 | tee .cache/test.log
echo "== packaging: the Helm chart and knative/ through helm and Knative's validation"
HELM=$(e2e/packaging/install-helm.sh)
export HELM
(cd e2e/packaging && go vet ./... && go test -count=1 -timeout 10m ./...) 2>&1 | tee .cache/packaging.log
echo "== kn func: the real func CLI builds and runs the function"
go test -count=1 -timeout 20m -v ./e2e/kncli 2>&1 | tee .cache/kncli.log | grep -E '^(--- |PASS|FAIL|ok)|RESULT|Error' || true
grep -q '^ok' .cache/kncli.log || { echo "kn func test failed (full output: .cache/kncli.log)"; tail -n 40 .cache/kncli.log; exit 1; }
echo "== go test: closed loop (e2e)"
set +e
go test -count=1 -timeout 30m -v ./e2e/closedloop > .cache/e2e.log 2>&1
rc=$?
set -e
grep -E '^(=== RUN|--- |PASS|FAIL|ok)|RESULT|Error Trace|Error:|rror:' .cache/e2e.log || true
if [ $rc -ne 0 ]; then
  echo "closed-loop tests failed (full output: .cache/e2e.log; process logs: .cache/e2e/*/)"
  tail -n 60 .cache/e2e.log
  exit $rc
fi

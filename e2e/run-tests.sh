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
# Wall time of each phase, printed as it ends and again as a summary at
# exit, pass or fail, so a slow or failing phase is named in one place
# (e2e/fresh-clone.sh collects these lines).
phases=()
phase_name=""
phase_start=0
phase() {
  phase_end
  phase_name=$1
  phase_start=$(date +%s)
  echo "== $phase_name"
}
phase_end() {
  [ -n "$phase_name" ] || return 0
  local line
  line=$(printf 'PHASE %-22s %4ds' "$phase_name" $(( $(date +%s) - phase_start )))
  phases+=("$line")
  echo "$line"
  phase_name=""
}
run_start=$(date +%s)
cleanup() {
  local rc=$?
  [ $rc -eq 0 ] || [ -z "$phase_name" ] || phase_name="$phase_name (failed)"
  phase_end
  # Eventing's processes hang off the control plane's namespace: first.
  [ -z "${knative_started:-}" ] || e2e/kube/knative.sh stop || true
  [ -z "${kube_started:-}" ] || e2e/kube/kube.sh stop || true
  for s in "${started[@]}"; do "$STACK" stop "$s" || true; done
  # KILL: the TLS node's data is thrown away with its directory.
  if [ -n "${CASSANDRA_TLS_DIR:-}" ]; then
    [ -f "$CASSANDRA_TLS_DIR/cassandra-tls.pid" ] && kill -KILL "$(cat "$CASSANDRA_TLS_DIR/cassandra-tls.pid")" 2>/dev/null || true
    rm -rf "$CASSANDRA_TLS_DIR"
  fi
  echo "== phase wall times"
  printf '%s\n' "${phases[@]}"
  printf 'PHASE %-22s %4ds\n' total $(( $(date +%s) - run_start ))
  exit $rc
}
trap cleanup EXIT INT TERM

# verbose_test PKG TIMEOUT LOG WHAT LOGS PATTERN: PKG's tests, verbose, into
# LOG; prints LOG's lines matching PATTERN and, when they fail, names WHAT
# and where its logs are (LOGS), shows LOG's end and exits with go test's
# status.
verbose_test() {
  local pkg=$1 timeout=$2 log=$3 what=$4 logs=$5 pattern=$6 rc
  set +e
  go test -count=1 -timeout "$timeout" -v "$pkg" > "$log" 2>&1
  rc=$?
  set -e
  grep -E "$pattern" "$log" || true
  if [ $rc -ne 0 ]; then
    echo "$what failed (full output: $log; $logs)"
    tail -n 60 "$log"
    exit $rc
  fi
}

phase "stack install and start"
# free_port N: the first port from N up that nothing on 127.0.0.1 accepts.
free_port() {
  local p=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}
# A second Cassandra that requires TLS and a client certificate, for the TLS
# tests (shared/store and the root package share it), with certificates
# made fresh for this run in a temporary directory; started beside the
# stack so its boot overlaps theirs, killed by PID at exit.
CASSANDRA_TLS_DIR=$(mktemp -d)
CASSANDRA_TLS_PORT=$(free_port 9142)
CASSANDRA_TLS_STORAGE_PORT=$(free_port 7012)
export CASSANDRA_TLS_DIR CASSANDRA_TLS_PORT CASSANDRA_TLS_STORAGE_PORT
"$STACK" start all cassandra-tls
eval "$("$STACK" env)"
export TEST_CASSANDRA_TLS_HOSTS=127.0.0.1:$CASSANDRA_TLS_PORT TEST_CASSANDRA_TLS_CERTS=$CASSANDRA_TLS_DIR/certs

# A missing server fails the run instead of skipping tests.
export AUTOSCALER_REQUIRE_SERVERS=1

phase "gofmt, vet, tidy"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.cache/*'))
if [ -n "$unformatted" ]; then echo "gofmt needed: $unformatted"; exit 1; fi
go vet ./...
e2e/tidy-check.sh

mkdir -p .cache
# The closed-loop tests stop and restart servers (TSDB outage, Cassandra
# restart), so they run after every other package, alone.
pkgs=$(go list ./... | grep -v -e /e2e/closedloop -e /e2e/kncli -e /e2e/kubeinstall -e /e2e/knativepath)
# The functions' own code (the root package, functions/, shared/) runs
# under the race detector: its worker pools, gathered state writes and
# receivers share memory across goroutines, and a lost lock there shows
# as a race, not as a failed assertion. The e2e packages drive processes
# and servers and run as they are.
race_pkgs=$(printf '%s\n' $pkgs | grep -v /e2e/)
other_pkgs=$(printf '%s\n' $pkgs | grep /e2e/)
phase "unit and integration"
go test -race -count=1 -timeout 30m $race_pkgs 2>&1 | tee .cache/test.log
go test -count=1 -timeout 30m $other_pkgs 2>&1 | tee -a .cache/test.log
# the Helm chart and knative/ through helm and Knative's validation
phase "packaging"
HELM=$(e2e/packaging/install-helm.sh)
export HELM
(cd e2e/packaging && go vet ./... && go test -count=1 -timeout 10m ./...) 2>&1 | tee .cache/packaging.log
# the chart and knative/ installed for real into a local kube-apiserver with
# Knative's CRDs (e2e/kube/kube.sh; a control plane this script starts is
# stopped at exit, by PID)
phase "kubernetes"
if ! e2e/kube/kube.sh status >/dev/null 2>&1; then
  kube_started=1
  # a port nothing else on this machine uses (another clone's control plane)
  KUBE_API_PORT=$(free_port 16443)
  export KUBE_API_PORT
  e2e/kube/kube.sh start
fi
go test -count=1 -timeout 20m ./e2e/kubeinstall 2>&1 | tee .cache/kubeinstall.log
# Knative's own processes on that control plane (e2e/kube/knative.sh;
# stopped at exit when started here), the autoscaler's event path through
# Eventing's (PingSource adapter, Broker, Trigger filter, functions, NVCF
# simulator), and the chart's Services through Serving's controller and
# webhook
phase "knative"
if ! e2e/kube/knative.sh status >/dev/null 2>&1; then
  knative_started=1
  e2e/kube/knative.sh start
fi
verbose_test ./e2e/knativepath 20m .cache/knativepath.log "Knative tests" "logs: .cache/knativepath/, .cache/knative/logs/" \
  '^(=== RUN|--- |PASS|FAIL|ok)|RESULT|Error Trace|Error:'
# the real func CLI builds and runs the function
phase "kn func"
go test -count=1 -timeout 20m -v ./e2e/kncli 2>&1 | tee .cache/kncli.log | grep -E '^(--- |PASS|FAIL|ok)|RESULT|Error' || true
grep -q '^ok' .cache/kncli.log || { echo "kn func test failed (full output: .cache/kncli.log)"; tail -n 40 .cache/kncli.log; exit 1; }
phase "closed loop"
verbose_test ./e2e/closedloop 30m .cache/e2e.log "closed-loop tests" "process logs: .cache/e2e/*/" \
  '^(=== RUN|--- |PASS|FAIL|ok)|RESULT|Error Trace|Error:|rror:'

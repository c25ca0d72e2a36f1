#!/usr/bin/env bash
# Runs a command while a busy loop keeps one core fully busy, to check that
# tests which depend on timing hold on a loaded machine (the project's
# machines have 2 cores):
#
#   e2e/cpuhog.sh go test -count=1 -v ./e2e/closedloop
#   CPUHOG_SECONDS=600 e2e/cpuhog.sh make test
#
# The hog is bounded: it stops by itself after CPUHOG_SECONDS (default 1800)
# even if this script is killed, and is killed by its PID when the command
# ends. The command's exit status is this script's.
set -euo pipefail
seconds=${CPUHOG_SECONDS:-1800}
if [ $# -eq 0 ]; then
  echo "usage: [CPUHOG_SECONDS=N] $0 COMMAND [ARGS...]" >&2
  exit 2
fi
# timeout ends the loop by itself; the loop is a shell builtin, so the
# whole hog is the one process whose PID is kept.
timeout "$seconds" bash -c 'while :; do :; done' &
hog=$!
trap 'kill "$hog" 2>/dev/null || true' EXIT INT TERM
echo "cpuhog: pid $hog keeps one core busy for at most ${seconds}s" >&2
set +e
"$@"
rc=$?
set -e
exit $rc

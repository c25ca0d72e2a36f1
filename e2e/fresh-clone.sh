#!/usr/bin/env bash
# The fresh-machine check anyone can repeat: clone main into a temporary
# directory and run CI there exactly as CI does (`CI=true bash .ci/run`),
# with nothing from this checkout: its own empty .cache/ (so Cassandra's
# jars are fetched and every server is started from scratch) and none of
# this shell's stack settings. Prints the wall time of each phase.
#
#   e2e/fresh-clone.sh                  # clone this repository's main and run CI
#   e2e/fresh-clone.sh --dry-run        # clone and check, run nothing
#   FRESH_CPUHOG=1 e2e/fresh-clone.sh   # the same with one core kept busy (e2e/cpuhog.sh)
#   make fresh-check                    # the first form
#
# What stays from the machine, as on any developer's machine that ran it
# before: Debian packages, Go's module and build caches, and the built
# tools in the per-machine tool cache (e2e/toolcache.sh;
# AUTOSCALER_TOOL_CACHE=off rebuilds func and helm too).
#
# The stack's ports must be free: a running stack would be reused and the
# run would not be fresh. Stop it first (`make stack-down` in the checkout
# that started it). The clone is removed after a passing run and kept after
# a failing one; the log is kept either way.
set -euo pipefail
dry=0
case ${1:-} in
  --dry-run) dry=1 ;;
  "") ;;
  *) echo "usage: $0 [--dry-run]" >&2; exit 2 ;;
esac
repo=$(cd "$(dirname "$0")/.." && git rev-parse --show-toplevel)
branch=${FRESH_BRANCH:-main}

busy=()
for port in 9042 8428 9090; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then busy+=("$port"); fi
done
if [ ${#busy[@]} -gt 0 ]; then
  msg="ports ${busy[*]} are taken: a running stack would be reused, not installed fresh (stop it with make stack-down where it was started)"
  if [ $dry -eq 0 ]; then echo "fresh-clone: $msg" >&2; exit 1; fi
  echo "fresh-clone: (dry run) $msg"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/nvcf-fresh.XXXXXX")
log=$tmp/ci.log
start=$(date +%s)
git clone -q --branch "$branch" "$repo" "$tmp/repo"
echo "fresh-clone: $branch at $(git -C "$tmp/repo" rev-parse --short HEAD) cloned into $tmp/repo in $(( $(date +%s) - start ))s"
[ -f "$tmp/repo/.ci/run" ] || { echo "fresh-clone: no .ci/run in the clone" >&2; exit 1; }

# Nothing of this shell's stack leaks in: the clone's stack.sh must find
# its own .cache and start its own servers.
clean=(env -u STACK_DIR -u SIM_ADDR -u AUTOSCALER_REQUIRE_SERVERS -u TEST_CASSANDRA_HOSTS -u TEST_VM_URL -u TEST_PROM_URL -u HELM CI=true)
cmd=(bash .ci/run)
if [ "${FRESH_CPUHOG:-0}" = 1 ]; then cmd=(e2e/cpuhog.sh bash .ci/run); fi
if [ $dry -eq 1 ]; then
  echo "fresh-clone: (dry run) would run in $tmp/repo: ${clean[*]} ${cmd[*]}"
  rm -rf "$tmp"
  exit 0
fi

echo "fresh-clone: running CI (log: $log)"
set +e
(cd "$tmp/repo" && "${clean[@]}" "${cmd[@]}" < /dev/null) > "$log" 2>&1
rc=$?
set -e
echo "fresh-clone: .ci/run exited $rc after $(( $(date +%s) - start ))s"
grep -E '^PHASE ' "$log" | awk '!seen[$0]++' || true
grep -E '^(--- FAIL|FAIL)' "$log" | head -20 || true
if [ $rc -eq 0 ]; then
  rm -rf "$tmp/repo"
  echo "fresh-clone: passed; log kept at $log"
else
  echo "fresh-clone: FAILED; clone and its process logs kept in $tmp/repo, log at $log" >&2
fi
exit $rc

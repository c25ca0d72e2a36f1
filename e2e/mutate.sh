#!/usr/bin/env bash
# Mutation testing: gremlins changes one operator at a time (a `<` for a
# `<=`, a `+` for a `-`, a negated condition) in the packages whose rules
# everything else rests on, and runs their tests against each change. A
# change no test notices ("LIVED") is a rule no test pins down.
#
#   make mutate                       # shared/policy, events, buckets, config, receiver, ids, watchfile
#   e2e/mutate.sh ./shared/events     # one package
#
# Fails when a package's test efficacy (killed / (killed + lived)) is under
# MUTATE_THRESHOLD percent (default 95). gremlins is built from the Go
# module proxy once per machine (see e2e/toolcache.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. e2e/toolcache.sh
GREMLINS_VERSION=v0.6.0
threshold=${MUTATE_THRESHOLD:-95}
bin=.cache/tools/bin/gremlins
key=gremlins-$GREMLINS_VERSION-$(go env GOOS)-$(go env GOARCH)

built_version() { go version -m "$1" 2>/dev/null | awk '$1 == "mod" && $2 == "github.com/go-gremlins/gremlins" { print $3 }'; }
if [ "$(built_version "$bin")" != "$GREMLINS_VERSION" ]; then
  if ! toolcache_get "$key" "$bin" || [ "$(built_version "$bin")" != "$GREMLINS_VERSION" ]; then
    echo "building gremlins $GREMLINS_VERSION from the Go module proxy..." >&2
    GOBIN=$PWD/.cache/tools/bin go install "github.com/go-gremlins/gremlins/cmd/gremlins@$GREMLINS_VERSION"
    toolcache_put "$key" "$bin"
  fi
fi

pkgs=("$@")
[ ${#pkgs[@]} -gt 0 ] || pkgs=(./shared/policy ./shared/events ./shared/buckets ./shared/config ./shared/receiver ./shared/ids ./shared/watchfile)
failed=()
for p in "${pkgs[@]}"; do
  echo "== gremlins $p"
  # One worker and a generous timeout: the machine is shared, and a mutant
  # that only times out is not counted as killed or lived.
  if ! "$bin" unleash --workers 1 --timeout-coefficient 5 --threshold-efficacy "$threshold" -S lt "$p"; then
    failed+=("$p")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "test efficacy under ${threshold}% (or gremlins failed) in: ${failed[*]}" >&2
  exit 1
fi

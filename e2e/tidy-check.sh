#!/usr/bin/env bash
# Fails when any module's go.mod or go.sum is not what `go mod tidy` would
# write: a direct dependency marked `// indirect`, a requirement nothing
# imports, or a missing go.sum line. Every go.mod in the repository is a
# module of its own (e2e/packaging keeps helm's and Knative's large trees
# out of the function's module), so each is checked in its own directory.
set -euo pipefail
cd "$(dirname "$0")/.."
rc=0
for mod in $(git ls-files 'go.mod' '*/go.mod' 2>/dev/null || find . -name go.mod -not -path './.cache/*'); do
  dir=$(dirname "$mod")
  if ! out=$(cd "$dir" && go mod tidy -diff 2>&1); then
    echo "go mod tidy needed in $dir (run: cd $dir && go mod tidy):"
    echo "$out"
    rc=1
  fi
done
exit $rc

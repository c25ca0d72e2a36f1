#!/usr/bin/env bash
# Builds the kn func CLI (`func`, knative.dev/func v0.44.0) from the Go module
# proxy into .cache/tools/bin/func, once: a binary that is already there and
# reports the pinned version is reused, and so is one another clone on this
# machine built (e2e/toolcache.sh). No release download is needed, only the
# module proxy.
#
# A scratch module under .cache/tools/func-src requires knative.dev/func; the
# mergo replace is func's own (its go.mod has it, but replaces apply only in
# the main module, so we repeat it).
#
# Usage: e2e/kncli/install-func.sh   (prints the binary's path last)
#
# Careful: any func command run inside a function root, even `func version`,
# creates .func/ there and appends a /.func rule to .gitignore. This script
# never runs the binary; the e2e test runs it in a temporary copy.
set -euo pipefail

FUNC_VERSION=v0.44.0
# The commit the v0.44.0 tag points at (the proxy's .info Origin); shown by
# `func version`, which otherwise prints empty fields for a `go build`.
FUNC_HASH=20a173a6

root="$(cd "$(dirname "$0")/../.." && pwd)"
tools="$root/.cache/tools"
bin="$tools/bin/func"
src="$tools/func-src"
start=$(date +%s.%N)

elapsed() { awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }

# The module version recorded in the binary is the ground truth; the
# ldflags-stamped `func version` is only for people.
built_version() {
  go version -m "$1" 2>/dev/null | awk '($1 == "mod" || $1 == "dep") && $2 == "knative.dev/func" { print $3 }'
}

. "$root/e2e/toolcache.sh"
key="func-$FUNC_VERSION-$(go env GOOS)-$(go env GOARCH)"
if [ -x "$bin" ] && [ "$(built_version "$bin")" = "$FUNC_VERSION" ]; then
  toolcache_has "$key" || toolcache_put "$key" "$bin"
  echo "func $FUNC_VERSION already installed at $bin (checked in $(elapsed)s)" >&2
  echo "$bin"
  exit 0
fi
# Another clone on this machine may have built it already.
if toolcache_get "$key" "$bin" && [ "$(built_version "$bin")" = "$FUNC_VERSION" ]; then
  echo "func $FUNC_VERSION copied from the machine's tool cache to $bin in $(elapsed)s" >&2
  echo "$bin"
  exit 0
fi

mkdir -p "$src" "$tools/bin"
cat > "$src/go.mod" <<MOD
module funccli

go 1.23

require knative.dev/func $FUNC_VERSION

replace github.com/imdario/mergo => dario.cat/mergo v1.0.1
MOD
cat > "$src/tools.go" <<'GO'
//go:build tools

// Package funccli only pins the kn func CLI for `go build`.
package funccli

import _ "knative.dev/func/cmd/func"
GO

echo "building func $FUNC_VERSION from the Go module proxy (a few minutes on 2 cores)..." >&2
cd "$src"
# -mod=mod lets go fill go.sum from the proxy on the first run (kept on top
# of the user's own GOFLAGS, which an environment GOFLAGS would replace).
export GOFLAGS="$(go env GOFLAGS) -mod=mod"
go mod tidy -e >/dev/null 2>&1 || true
go build -trimpath -o "$bin.tmp" \
  -ldflags "-s -w -X knative.dev/func/pkg/app.vers=$FUNC_VERSION -X knative.dev/func/pkg/app.hash=$FUNC_HASH" \
  knative.dev/func/cmd/func
mv "$bin.tmp" "$bin"
got="$(built_version "$bin")"
if [ "$got" != "$FUNC_VERSION" ]; then
  echo "built $bin but it records knative.dev/func $got, want $FUNC_VERSION" >&2
  exit 1
fi
toolcache_put "$key" "$bin"
echo "built func $FUNC_VERSION at $bin in $(elapsed)s" >&2
echo "$bin"

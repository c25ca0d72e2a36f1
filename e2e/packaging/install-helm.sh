#!/usr/bin/env bash
# Installs the helm CLI the packaging test renders the chart with, built from
# the Go module proxy (no other download site is reachable here) into the
# repository's git-ignored .cache/tools/bin. Idempotent: an installed helm of
# the right version is reused, and so is one another clone on this machine
# built (e2e/toolcache.sh). Prints the path.
set -euo pipefail
HELM_VERSION=${HELM_VERSION:-v3.19.0}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=$REPO/.cache/tools/bin
mkdir -p "$BIN"
. "$REPO/e2e/toolcache.sh"
key="helm-$HELM_VERSION+k8s1.34-$(go env GOOS)-$(go env GOARCH)"
if [[ -x $BIN/helm && -f $BIN/helm.version && $(cat "$BIN/helm.version") == "$HELM_VERSION+k8s1.34" ]]; then
  toolcache_has "$key" || toolcache_put "$key" "$BIN/helm"
  echo "$BIN/helm"
  exit 0
fi
# Another clone on this machine may have built it already; the binary's
# own version line is checked, not only the cache key.
if toolcache_get "$key" "$BIN/helm" && "$BIN/helm" version --template '{{.Version}}' 2>/dev/null | grep -qx "$HELM_VERSION"; then
  echo "$HELM_VERSION+k8s1.34" > "$BIN/helm.version"
  echo "[packaging] helm $HELM_VERSION copied from the machine's tool cache" >&2
  echo "$BIN/helm"
  exit 0
fi
start=$(date +%s)
# The flags helm's own Makefile sets: without them a source build reports no
# version and assumes Kubernetes 1.20, which the chart's kubeVersion refuses.
ldflags="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in pkg/lint/rules pkg/chartutil; do
  ldflags+=" -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=34"
done
GOBIN=$BIN GOFLAGS=-mod=mod go install -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
echo "$HELM_VERSION+k8s1.34" > "$BIN/helm.version"
toolcache_put "$key" "$BIN/helm"
echo "[packaging] built helm $HELM_VERSION in $(( $(date +%s) - start ))s" >&2
echo "$BIN/helm"

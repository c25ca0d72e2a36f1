#!/usr/bin/env bash
# Installs the local Kubernetes control plane's binaries into
# $KUBE_DIR/bin (default: the repository's git-ignored .cache/kube/bin):
#   etcd            Debian's etcd-server package (apt, when missing)
#   kube-apiserver, kube-controller-manager, kubectl
#                   built from the Go module proxy (no other download site
#                   is reachable here): a scratch module requiring
#                   k8s.io/kubernetes, with one replace per staging module,
#                   since kubernetes' own go.mod points those at ./staging
#                   directories a module consumer does not get.
# Idempotent: binaries of the right version are reused, and so are ones
# another clone on this machine built (e2e/toolcache.sh). Cold build: see
# README "Measured here".
set -euo pipefail
KUBE_VERSION=${KUBE_VERSION:-v1.34.3}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
KUBE_DIR=${KUBE_DIR:-$REPO/.cache/kube}
BIN=$KUBE_DIR/bin
mkdir -p "$BIN"
. "$REPO/e2e/toolcache.sh"
log() { echo "[kube] $*" >&2; }

if ! command -v etcd >/dev/null; then
  log "installing Debian's etcd-server"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server >&2 ||
    { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server >&2; }
  # The package enables a system etcd on the machine's 2379; ours runs in
  # its own network namespace, so the system one is only noise.
  if command -v systemctl >/dev/null && systemctl is-active -q etcd 2>/dev/null; then
    systemctl disable --now etcd >&2 || true
  fi
fi

tools=(kube-apiserver kube-controller-manager kubectl)
# have TOOL: TOOL is installed at KUBE_VERSION (its own version line, not
# only a marker file, is checked).
have() {
  [ -x "$BIN/$1" ] || return 1
  local out
  # Captured first: grep -q closing the pipe early would fail the pipeline.
  case $1 in
    kubectl) out=$("$BIN/kubectl" version --client 2>/dev/null) && grep -q "^Client Version: $KUBE_VERSION$" <<<"$out" ;;
    *) out=$("$BIN/$1" --version 2>/dev/null) && grep -q "^Kubernetes $KUBE_VERSION$" <<<"$out" ;;
  esac
}
missing=()
for t in "${tools[@]}"; do
  key="$t-$KUBE_VERSION-$(go env GOOS)-$(go env GOARCH)"
  if have "$t"; then
    toolcache_has "$key" || toolcache_put "$key" "$BIN/$t"
  elif toolcache_get "$key" "$BIN/$t" && have "$t"; then
    log "$t $KUBE_VERSION copied from the machine's tool cache"
  else
    missing+=("$t")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

start=$(date +%s)
mod=$KUBE_DIR/build
mkdir -p "$mod"
GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" > "$mod/kubernetes.json"
kmod=$(sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p' "$mod/kubernetes.json")
staging=${KUBE_VERSION/v1./v0.}
{
  echo "module kubebuild"
  echo
  echo "go 1.24.0"
  echo
  echo "require k8s.io/kubernetes $KUBE_VERSION"
  echo
  echo "replace ("
  # every "k8s.io/x => ./staging/src/k8s.io/x" line of kubernetes' go.mod
  sed -n 's|^\t\(k8s.io/[a-z0-9-]*\) => ./staging/.*|\t\1 => \1 '"$staging"'|p' "$kmod"
  echo ")"
} > "$mod/go.mod"
rm -f "$mod/go.sum"
# The version stamps kubernetes' own build (hack/lib/version.sh) sets; a
# plain go build reports v0.0.0, which kubectl and helm reject.
minor=$(echo "$KUBE_VERSION" | cut -d. -f2)
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
  ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done
(
  cd "$mod"
  pkgs=()
  for t in "${missing[@]}"; do
    case $t in
      kubectl) pkgs+=(k8s.io/kubernetes/cmd/kubectl) ;;
      *) pkgs+=("k8s.io/kubernetes/cmd/$t") ;;
    esac
  done
  log "building ${missing[*]} $KUBE_VERSION from the module proxy (minutes on 2 cores)"
  GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$BIN/" "${pkgs[@]}" >&2
)
for t in "${missing[@]}"; do
  have "$t" || { log "built $t does not report $KUBE_VERSION"; exit 1; }
  toolcache_put "$t-$KUBE_VERSION-$(go env GOOS)-$(go env GOARCH)" "$BIN/$t"
done
log "built ${missing[*]} in $(( $(date +%s) - start ))s"

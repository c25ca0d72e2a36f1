#!/usr/bin/env bash
# A local Kubernetes control plane, from real sources, for installing the
# chart and knative/ for real and running Knative's own processes against
# it (no containers, no kubelet here: the Knative and NVCF parts run as local
# processes). Everything lives under one directory (.cache/kube of the repo)
# and every process is stopped by its recorded PID.
#
#   netns     a network + mount namespace held by a sleeping process (the
#             "node"): no interface to the machine's network, so servers
#             binding all addresses in it (or in namespaces bridged to it,
#             as e2e/kube/knative.sh does for Knative's components) expose
#             nothing and collide with nothing on the host, where Prometheus
#             holds 127.0.0.1:9090; its own /etc/hosts and /etc/resolv.conf
#             are bind-mounted over the machine's, so cluster names (*.svc,
#             *.svc.cluster.local) resolve inside and the machine's files
#             are never touched
#   etcd      Debian's etcd-server (3.4), in the netns      127.0.0.1:2379
#   apiserver kube-apiserver (install.sh builds it), in the netns, token
#             auth, RBAC, service-account keys               127.0.0.1:6443
#   controller-manager  namespace deletion, garbage collection, service
#             accounts and aggregated cluster roles (nothing that needs pods)
#   forward   nsforward: the API server out to the host's 127.0.0.1:KUBE_API_PORT,
#             the stack's servers on the host into the netns (KUBE_HOST_FORWARDS)
#   crds      Knative Serving's and Eventing's CRDs, applied at every start
#
# Usage: kube.sh COMMAND
#   install   etcd-server and the Kubernetes binaries (install.sh), the
#             forwarder, keys, certificates and tokens; idempotent
#   start     install, then start what is not running, wait for /readyz and
#             apply the CRDs; a no-op when all is up
#   stop      stop everything start started, by PID (TERM, then KILL)
#   status    one line per process (exit 1 if any is down)
#   env       export lines: KUBECONFIG (host side), KUBECONFIG_IN (inside the
#             netns), KUBECTL, KUBE_DIR, KUBE_NETNS_PID, KUBE_NETNS,
#             KUBE_API_PORT, KUBE_BIN
#   exec -- CMD...   runs CMD inside the netns and its mount namespace, with
#             KUBECONFIG pointing at the API server as seen from inside
#   hosts IP NAME... maps NAMEs to IP in the netns' /etc/hosts (replacing
#             earlier lines for those names; inserted after the file's three
#             header lines, so lines other scripts keep at the end stay last)
#   forward NAME SPEC...  starts one more forwarder (stopped by stop); SPEC
#             is in:LISTEN=DIAL (listen in the netns, dial on the host) or
#             out:LISTEN=DIAL (listen on the host, dial in the netns)
#   logs NAME [LINES]     the tail of NAME's log
#
# Settings (environment):
#   KUBE_DIR            state: bin, keys, etcd data, logs, pids (<repo>/.cache/kube)
#   KUBE_API_PORT       the API server on the host's 127.0.0.1 (16443)
#   KUBE_HOST_FORWARDS  host servers made reachable inside the netns, as
#                       "NETNS_LISTEN=HOST_DIAL ..." (default: Cassandra,
#                       VictoriaMetrics and Prometheus on their own ports, on
#                       all of the netns' addresses, so that processes in
#                       namespaces bridged to it reach them too)
#   KUBE_READY_TIMEOUT  seconds to wait for the API server (120)
#
# Needs root (unshare, nsenter, mount); the machine's own files are left
# alone.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
KUBE_DIR=${KUBE_DIR:-$REPO/.cache/kube}
mkdir -p "$KUBE_DIR"
# The physical path: every process's command line names it (pid_of), and a
# worktree whose .cache is a symlink must recognise what another started.
KUBE_DIR=$(cd "$KUBE_DIR" && pwd -P)
# The port of a running control plane is kept in run/api-port, so env and
# status find it whatever the caller's environment says.
KUBE_API_PORT=${KUBE_API_PORT:-$(cat "$KUBE_DIR/run/api-port" 2>/dev/null || echo 16443)}
KUBE_HOST_FORWARDS=${KUBE_HOST_FORWARDS:-"0.0.0.0:9042=127.0.0.1:9042 0.0.0.0:8428=127.0.0.1:8428 0.0.0.0:9090=127.0.0.1:9090"}
KUBE_READY_TIMEOUT=${KUBE_READY_TIMEOUT:-120}
KUBE_VERSION=${KUBE_VERSION:-v1.34.3}
# The versions knative/ and the chart are validated against (e2e/packaging/go.mod).
SERVING_VERSION=${SERVING_VERSION:-v0.42.2}
EVENTING_VERSION=${EVENTING_VERSION:-v0.42.0}

BIN=$KUBE_DIR/bin
PKI=$KUBE_DIR/pki
RUN=$KUBE_DIR/run
LOGS=$KUBE_DIR/logs
API_IN=127.0.0.1:6443

PROCS=(netns etcd apiserver controller-manager forward)

. "$REPO/e2e/procs.sh"

say() { printf '[kube] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

pidfile() { echo "$RUN/$1.pid"; }
logfile() { echo "$LOGS/$1.log"; }

# pid_of NAME: the recorded PID if that process is alive and is ours (its
# command line names KUBE_DIR); a stale or reused PID prints nothing.
pid_of() { procs_pid "$(pidfile "$1")" "$KUBE_DIR"; }
running() { [ -n "$(pid_of "$1")" ]; }

# launch NAME CMD...: starts CMD detached, appending to NAME's log, and
# records its PID (e2e/procs.sh).
launch() {
  local name=$1
  shift
  procs_launch "$(pidfile "$name")" "$(logfile "$name")" "$name" "$@"
}

# in_netns CMD...: CMD in the netns and its mount namespace (nsenter execs
# CMD itself, so a launched PID is the server's own).
in_netns() {
  local pid
  pid=$(pid_of netns)
  [ -n "$pid" ] || die "the network namespace is not running (kube.sh start)"
  # --wd: entering the mount namespace would otherwise lose the caller's
  # working directory, and relative paths with it.
  nsenter -t "$pid" -n -m --wd="$PWD" -- "$@"
}

# wait_for NAME SECONDS CHECK...: polls CHECK until it succeeds; on NAME's
# exit or a timeout prints the end of its log and fails.
wait_for() {
  local name=$1 secs=$2
  shift 2
  procs_wait "$name" "$secs" 0.5 30 procs_quiet "$@"
}

stop_proc() {
  local name=$1 pid
  pid=$(pid_of "$name")
  if [ -z "$pid" ]; then
    rm -f "$(pidfile "$name")"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do [ -n "$(pid_of "$name")" ] || break; sleep 0.25; done
  if [ -n "$(pid_of "$name")" ]; then
    say "$name (pid $pid) still running 10 s after TERM; sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do [ -n "$(pid_of "$name")" ] || break; sleep 0.25; done
  fi
  rm -f "$(pidfile "$name")" "$RUN/$name.ready"
  say "$name stopped (pid $pid)"
}

# ------------------------------------------------------------------ install

# The admin and controller-manager tokens are made once per install, kept
# in 0600 files and never printed; the kubeconfigs that carry them are 0600
# too.
gen_secrets() {
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  if [ ! -f "$PKI/ca.crt" ] || [ ! -f "$PKI/apiserver.crt" ]; then
    say "making a CA and the API server's certificate"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=nvcf-autoscaler local kube CA" \
      -keyout "$PKI/ca.key" -out "$PKI/ca.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
      -keyout "$PKI/apiserver.key" -out "$PKI/apiserver.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,IP:10.96.0.1,IP:10.244.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n' > "$PKI/apiserver.ext"
    openssl x509 -req -in "$PKI/apiserver.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
      -days 3650 -extfile "$PKI/apiserver.ext" -out "$PKI/apiserver.crt" 2>/dev/null
  fi
  if [ ! -f "$PKI/sa.key" ]; then
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  fi
  if [ ! -f "$PKI/tokens.csv" ]; then
    (
      umask 077
      # token,user,uid,"groups": both in system:masters. The controller
      # manager's own bootstrap role does not cover every controller it
      # runs unless each gets a service-account credential, which is more
      # moving parts than a local control plane needs.
      printf '%s,admin,admin,"system:masters"\n' "$(openssl rand -hex 32)" > "$PKI/tokens.csv.tmp"
      printf '%s,system:kube-controller-manager,kcm,"system:masters"\n' "$(openssl rand -hex 32)" >> "$PKI/tokens.csv.tmp"
      mv "$PKI/tokens.csv.tmp" "$PKI/tokens.csv"
    )
  fi
  chmod 600 "$PKI"/*.key "$PKI/tokens.csv"
  kubeconfig "$KUBE_DIR/kubeconfig-in" "$API_IN" admin
  kubeconfig "$KUBE_DIR/kubeconfig-kcm" "$API_IN" system:kube-controller-manager
}

# kubeconfig FILE ADDR USER: a kubeconfig for USER's token at https://ADDR.
kubeconfig() {
  local file=$1 addr=$2 user=$3 token
  token=$(awk -F, -v u="$user" '$2 == u { print $1 }' "$PKI/tokens.csv")
  (
    umask 077
    cat > "$file.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://$addr
    certificate-authority: $PKI/ca.crt
users:
- name: $user
  user:
    token: $token
contexts:
- name: local
  context:
    cluster: local
    user: $user
current-context: local
EOF
    mv "$file.tmp" "$file"
  )
}

build_forwarder() {
  local src
  if [ -x "$BIN/nsforward" ]; then
    src=$(cd "$REPO" && find e2e/kube/nsforward -name '*.go' -newer "$BIN/nsforward")
    [ -n "$src" ] || return 0
  fi
  (cd "$REPO" && go build -o "$BIN/nsforward" ./e2e/kube/nsforward)
}

# knative_dir MODULE VERSION: the module's directory in the Go module cache
# (downloaded from the module proxy when missing).
knative_dir() {
  (cd "$REPO/e2e/packaging" && GOFLAGS=-mod=mod go mod download -json "$1@$2") |
    sed -n 's/^\t"Dir": "\(.*\)",$/\1/p'
}

cmd_install() {
  command -v unshare >/dev/null && command -v nsenter >/dev/null || die "unshare/nsenter (util-linux) needed"
  [ "$(id -u)" = 0 ] || die "needs root: network and mount namespaces"
  KUBE_DIR=$KUBE_DIR KUBE_VERSION=$KUBE_VERSION "$HERE/install.sh"
  mkdir -p "$BIN"
  ln -sf "$(command -v etcd)" "$BIN/etcd"
  build_forwarder
  gen_secrets
}

# ------------------------------------------------------------------ start

start_netns() {
  running netns && return 0
  mkdir -p "$RUN"
  if [ ! -f "$RUN/hosts" ]; then
    printf '# kube.sh: the network namespace'"'"'s /etc/hosts (kube.sh hosts IP NAME...)\n127.0.0.1 localhost\n::1 localhost\n' > "$RUN/hosts"
  fi
  # No DNS server answers inside (a name not in hosts fails fast); one can
  # be started on 127.0.0.1:53 in the netns without touching this file.
  printf '# kube.sh: names come from /etc/hosts in this namespace\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n' > "$RUN/resolv.conf"
  # exec -a puts KUBE_DIR in the holder's command line, so pid_of knows it.
  launch netns unshare --net --mount --propagation private -- bash -c '
    set -e
    ip link set lo up
    mount --bind "$1/hosts" /etc/hosts
    mount --bind "$1/resolv.conf" /etc/resolv.conf
    exec -a "kube-netns $1" sleep infinity' _ "$RUN"
  wait_for netns 10 netns_ready
}
# netns_ready: the holder has brought lo up and mounted its hosts file.
netns_ready() {
  local pid
  pid=$(pid_of netns)
  [ -n "$pid" ] && nsenter -t "$pid" -n -m -- grep -q "^# kube.sh" /etc/hosts &&
    nsenter -t "$pid" -n -- ip -brief link show lo | grep -qw UP
}

start_etcd() {
  running etcd && return 0
  mkdir -p "$KUBE_DIR/etcd"
  chmod 700 "$KUBE_DIR/etcd"
  launch etcd nsenter -t "$(pid_of netns)" -n -m -- "$BIN/etcd" --name kube --data-dir "$KUBE_DIR/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster kube=http://127.0.0.1:2380 --listen-metrics-urls "" --quota-backend-bytes 1073741824
  wait_for etcd 30 in_netns curl -fsS --max-time 2 http://127.0.0.1:2379/health
}

start_apiserver() {
  running apiserver && return 0
  mkdir -p "$KUBE_DIR/apiserver-certs"
  launch apiserver nsenter -t "$(pid_of netns)" -n -m -- "$BIN/kube-apiserver" \
    --etcd-servers http://127.0.0.1:2379 \
    --bind-address 0.0.0.0 --secure-port 6443 --advertise-address 127.0.0.1 \
    --cert-dir "$KUBE_DIR/apiserver-certs" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --token-auth-file "$PKI/tokens.csv" \
    --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range 10.96.0.0/16 \
    --endpoint-reconciler-type none \
    --profiling=false
  wait_for apiserver "$KUBE_READY_TIMEOUT" in_netns "$BIN/kubectl" --kubeconfig "$KUBE_DIR/kubeconfig-in" get --raw /readyz
}

start_controller_manager() {
  running controller-manager && return 0
  launch controller-manager nsenter -t "$(pid_of netns)" -n -m -- "$BIN/kube-controller-manager" \
    --kubeconfig "$KUBE_DIR/kubeconfig-kcm" \
    --authentication-kubeconfig "$KUBE_DIR/kubeconfig-kcm" --authorization-kubeconfig "$KUBE_DIR/kubeconfig-kcm" \
    --authentication-skip-lookup \
    --controllers namespace-controller,garbage-collector-controller,serviceaccount-controller,serviceaccount-token-controller,clusterrole-aggregation-controller \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --leader-elect=false --bind-address 127.0.0.1 --profiling=false
  wait_for controller-manager 60 in_netns curl -fsSk --max-time 2 https://127.0.0.1:10257/healthz
}

start_forward() {
  running forward && return 0
  local specs=("out:127.0.0.1:$KUBE_API_PORT=$API_IN") f
  for f in $KUBE_HOST_FORWARDS; do specs+=("in:$f"); done
  rm -f "$RUN/forward.ready"
  echo "$KUBE_API_PORT" > "$RUN/api-port"
  kubeconfig "$KUBE_DIR/kubeconfig" "127.0.0.1:$KUBE_API_PORT" admin
  launch forward "$BIN/nsforward" -netns "/proc/$(pid_of netns)/ns/net" -ready "$RUN/forward.ready" "${specs[@]}"
  wait_for forward 15 test -f "$RUN/forward.ready"
  wait_for forward 15 "$BIN/kubectl" --kubeconfig "$KUBE_DIR/kubeconfig" get --raw /readyz
}

apply_crds() {
  local serving eventing
  serving=$(knative_dir knative.dev/serving "$SERVING_VERSION")
  eventing=$(knative_dir knative.dev/eventing "$EVENTING_VERSION")
  [ -d "$serving/config/core/300-resources" ] && [ -d "$eventing/config/core/resources" ] ||
    die "Knative's CRDs not found in the module cache"
  # Server-side apply: idempotent, and the CRDs are too big for the
  # last-applied annotation of a client-side apply.
  "$BIN/kubectl" --kubeconfig "$KUBE_DIR/kubeconfig" apply --server-side --force-conflicts -o name \
    -f "$serving/config/core/300-resources" -f "$eventing/config/core/resources" > "$LOGS/crds.log"
  "$BIN/kubectl" --kubeconfig "$KUBE_DIR/kubeconfig" wait --for condition=Established --timeout 60s \
    crd/services.serving.knative.dev crd/brokers.eventing.knative.dev crd/triggers.eventing.knative.dev \
    crd/pingsources.sources.knative.dev crd/sinkbindings.sources.knative.dev >/dev/null
}

cmd_start() {
  cmd_install
  local t0=$SECONDS name
  # Processes left running in a namespace whose holder died cannot be
  # reached through a new one: stop them and start all afresh.
  if ! running netns; then
    for name in forward controller-manager apiserver etcd; do
      if running "$name"; then
        say "the namespace holder is gone; stopping what ran in it"
        cmd_stop
        break
      fi
    done
  fi
  start_netns
  start_etcd
  start_apiserver
  start_controller_manager
  start_forward
  apply_crds
  say "up in $((SECONDS - t0))s: API server https://127.0.0.1:$KUBE_API_PORT (eval \"\$(e2e/kube/kube.sh env)\")"
}

cmd_stop() {
  local f name
  # extra forwarders first, then the control plane top-down, the netns last
  for f in "$RUN"/forward-*.pid; do
    [ -e "$f" ] || continue
    name=${f##*/}; stop_proc "${name%.pid}"
  done
  for name in forward controller-manager apiserver etcd netns; do stop_proc "$name"; done
}

cmd_status() {
  local rc=0 name pid
  for name in "${PROCS[@]}"; do
    pid=$(pid_of "$name")
    if [ -n "$pid" ]; then printf '%-20s %-8s up\n' "$name" "$pid"; else printf '%-20s %-8s down\n' "$name" -; rc=1; fi
  done
  [ $rc -ne 0 ] || "$BIN/kubectl" --kubeconfig "$KUBE_DIR/kubeconfig" get --raw /readyz >/dev/null 2>&1 ||
    { echo "apiserver /readyz fails on 127.0.0.1:$KUBE_API_PORT"; rc=1; }
  return $rc
}

cmd_env() {
  echo "export KUBE_DIR=$KUBE_DIR"
  echo "export KUBE_BIN=$BIN"
  echo "export KUBECONFIG=$KUBE_DIR/kubeconfig"
  echo "export KUBECONFIG_IN=$KUBE_DIR/kubeconfig-in"
  echo "export KUBECTL=$BIN/kubectl"
  echo "export KUBE_API_PORT=$KUBE_API_PORT"
  local pid
  pid=$(pid_of netns)
  echo "export KUBE_NETNS_PID=$pid"
  echo "export KUBE_NETNS=${pid:+/proc/$pid/ns/net}"
}

cmd_exec() {
  [ "${1:-}" = -- ] && shift
  [ $# -gt 0 ] || die "usage: kube.sh exec -- CMD..."
  KUBECONFIG=$KUBE_DIR/kubeconfig-in in_netns "$@"
}

cmd_hosts() {
  [ $# -ge 2 ] || die "usage: kube.sh hosts IP NAME..."
  local ip=$1; shift
  [ -f "$RUN/hosts" ] || die "the network namespace was never started"
  local names=" $* " tmp
  tmp=$(awk -v names="$names" '{ keep = 1; for (i = 2; i <= NF; i++) if (index(names, " " $i " ")) keep = 0; if (keep) print }' "$RUN/hosts")
  # Written in place, not renamed: the netns sees this inode through its
  # bind mount.
  # The new line goes after the three header lines, above anything another
  # script keeps below a marker of its own.
  { printf '%s\n' "$tmp" | head -n 3; echo "$ip $*"; printf '%s\n' "$tmp" | tail -n +4; } > "$RUN/hosts"
}

cmd_forward() {
  [ $# -ge 2 ] || die "usage: kube.sh forward NAME in:LISTEN=DIAL|out:LISTEN=DIAL ..."
  local name=forward-$1; shift
  running netns || die "the network namespace is not running (kube.sh start)"
  stop_proc "$name"
  rm -f "$RUN/$name.ready"
  launch "$name" "$BIN/nsforward" -netns "/proc/$(pid_of netns)/ns/net" -ready "$RUN/$name.ready" "$@"
  wait_for "$name" 10 test -f "$RUN/$name.ready"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) cmd_env ;;
  exec) cmd_exec "$@" ;;
  hosts) cmd_hosts "$@" ;;
  forward) cmd_forward "$@" ;;
  logs) tail -n "${2:-50}" "$(logfile "${1:?usage: kube.sh logs NAME [LINES]}")" ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac

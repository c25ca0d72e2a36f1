#!/usr/bin/env bash
# Knative Eventing and Serving's controller and webhook, from their own
# sources, on the local control plane of e2e/kube/kube.sh: each module's
# config/ (namespace, service accounts, RBAC, config maps, CRDs, webhook
# configurations, Services, Deployments) applied to the API server, and
# its processes run locally instead of in pods:
#
#   eventing-controller    cmd/controller        Broker, Trigger, PingSource, SinkBinding, ...
#   eventing-webhook       cmd/webhook           defaulting, validation, SinkBinding injection
#   pingsource-mt-adapter  cmd/mtping            the PingSource adapter (the cron)
#   mt-broker-controller   cmd/mtchannel_broker  the MTChannelBasedBroker class
#   mt-broker-ingress      cmd/broker/ingress    events into a Broker
#   mt-broker-filter       cmd/broker/filter     Trigger filters, delivery to subscribers
#   imc-controller         cmd/in_memory/channel_controller
#   imc-dispatcher         cmd/in_memory/channel_dispatcher  the Broker's channel
#   serving-webhook        serving's cmd/webhook     Service defaulting and validation
#   serving-controller     serving's cmd/controller  Service -> Configuration,
#                          Revision, Route, Deployment, PodAutoscaler, ...
#
# Serving's autoscaler, activator and a networking layer are not run:
# nothing here runs pods (no kubelet, no Deployment controller), so a
# Revision's Deployment is made and stays without pods, and the functions
# run as local processes addressed by URL. config-deployment is as
# released, so Serving resolves an image tag to its digest through the
# registry, which this machine cannot reach: an image given by digest
# (the chart's image.digest, what kn func deploy writes) is not looked up.
#
# "Pods": each process gets its own network namespace (Knative binds its
# health probes on a fixed :8080, so two cannot share one), joined to a
# bridge knbr0 (10.244.0.1/24) in kube.sh's namespace, the "node"; all
# share kube.sh's mount namespace and so its private /etc/hosts. Each runs
# as its own service account (a TokenRequest token), so config/'s RBAC is
# what they get.
#
# Services: the API server hands out ClusterIPs (10.96.0.0/16); in the node
# they are local addresses (a `local` route on lo), and one nsforward
# (kube.sh's forwarder, run inside the node) carries ClusterIP:port to the
# backing process' 10.244.0.N:targetPort, as kube-proxy would. Names:
# a loop (hostsync) writes `ClusterIP name.ns.svc.cluster.local ...` for
# every Service (an ExternalName one, e.g. an in-memory channel, gets its
# target's address) into the node's /etc/hosts, as cluster DNS would.
# kube-apiserver calls the webhooks at their ClusterIP:443.
#
# No kubelet: the script writes what one would report for these
# processes, the Endpoints of their Services and their Deployments'
# Available condition (the Broker, channel and PingSource readiness read
# those); nothing on the event path is stood in for.
#
# Usage: knative.sh COMMAND
#   install   build the binaries (cached; see e2e/toolcache.sh)
#   start     kube.sh start, install, then apply config/ and start what is
#             not running (running ones are kept); waits for each webhook
#             to answer the API server
#   stop      stop every process by PID, delete Knative's webhook
#             configurations (they would refuse writes with no webhook)
#   status    one line per process (exit 1 if any is down)
#   env       export lines: KNATIVE_DIR, KNATIVE_NODE_IP (where pods reach
#             processes in the node, e.g. the functions)
#   logs NAME [LINES]
#
# Settings: EVENTING_VERSION (v0.42.0), SERVING_VERSION (v0.42.2, as
# kube.sh's CRDs), KNATIVE_DIR (<repo>/.cache/knative),
# KNATIVE_READY_TIMEOUT (seconds, 120).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
KUBE=$HERE/kube.sh
EVENTING_VERSION=${EVENTING_VERSION:-v0.42.0}
SERVING_VERSION=${SERVING_VERSION:-v0.42.2}
KNATIVE_DIR=${KNATIVE_DIR:-$REPO/.cache/knative}
mkdir -p "$KNATIVE_DIR"
KNATIVE_DIR=$(cd "$KNATIVE_DIR" && pwd -P) # physical, as kube.sh's KUBE_DIR
export KNATIVE_DIR
KNATIVE_READY_TIMEOUT=${KNATIVE_READY_TIMEOUT:-120}
BIN=$KNATIVE_DIR/bin
RUN=$KNATIVE_DIR/run
LOGS=$KNATIVE_DIR/logs
BRIDGE=knbr0
NODE_IP=10.244.0.1
SERVICE_CIDR=10.96.0.0/16

# The processes: name, module (eventing unless given), binary (cmd/
# path), pod address, service account, the Services it backs, extra
# environment (the Deployment's own values). The common env
# (SYSTEM_NAMESPACE, POD_NAME, ...) is added by start_pod. Serving's
# webhook comes first: the chart's Services, applied by the tests, need it.
PODS=(serving-webhook eventing-webhook eventing-controller mt-broker-controller imc-controller imc-dispatcher
  mt-broker-ingress mt-broker-filter pingsource-mt-adapter serving-controller)
WEBHOOKS=(serving-webhook eventing-webhook)
MODULES=(eventing serving)
declare -A VERSION=([eventing]=$EVENTING_VERSION [serving]=$SERVING_VERSION)
declare -A NAMESPACE=([eventing]=knative-eventing [serving]=knative-serving)
declare -A MODULE=([serving-webhook]=serving [serving-controller]=serving)
declare -A CMD=(
  [serving-controller]=controller [serving-webhook]=webhook
  [eventing-controller]=controller [eventing-webhook]=webhook [pingsource-mt-adapter]=mtping
  [mt-broker-controller]=mtchannel_broker [mt-broker-ingress]=broker/ingress [mt-broker-filter]=broker/filter
  [imc-controller]=in_memory/channel_controller [imc-dispatcher]=in_memory/channel_dispatcher)
declare -A IP=(
  [eventing-controller]=10.244.0.11 [eventing-webhook]=10.244.0.12 [pingsource-mt-adapter]=10.244.0.13
  [mt-broker-controller]=10.244.0.14 [mt-broker-ingress]=10.244.0.15 [mt-broker-filter]=10.244.0.16
  [imc-controller]=10.244.0.17 [imc-dispatcher]=10.244.0.18
  [serving-controller]=10.244.0.21 [serving-webhook]=10.244.0.22)
declare -A SA=(
  [eventing-controller]=eventing-controller [eventing-webhook]=eventing-webhook
  [pingsource-mt-adapter]=pingsource-mt-adapter [mt-broker-controller]=eventing-controller
  [mt-broker-ingress]=mt-broker-ingress [mt-broker-filter]=mt-broker-filter
  [imc-controller]=imc-controller [imc-dispatcher]=imc-dispatcher
  [serving-controller]=controller [serving-webhook]=controller)
declare -A SERVICES=(
  [serving-webhook]=webhook
  [eventing-webhook]=eventing-webhook [mt-broker-ingress]=broker-ingress [mt-broker-filter]=broker-filter
  [imc-controller]=inmemorychannel-webhook [imc-dispatcher]=imc-dispatcher)
declare -A ENV=(
  [eventing-controller]="CONFIG_OBSERVABILITY_NAME=config-observability METRICS_DOMAIN=knative.dev/eventing APISERVER_RA_IMAGE=ko://knative.dev/eventing/cmd/apiserver_receive_adapter"
  [eventing-webhook]="METRICS_DOMAIN=knative.dev/eventing WEBHOOK_NAME=eventing-webhook WEBHOOK_PORT=8443 SINK_BINDING_SELECTION_MODE=exclusion"
  [pingsource-mt-adapter]="NAMESPACE=knative-eventing K_SINK_TIMEOUT=-1"
  [mt-broker-controller]="CONFIG_OBSERVABILITY_NAME=config-observability METRICS_DOMAIN=knative.dev/eventing"
  [mt-broker-ingress]="NAMESPACE=knative-eventing CONTAINER_NAME=ingress CONFIG_OBSERVABILITY_NAME=config-observability METRICS_DOMAIN=knative.dev/internal/eventing INGRESS_PORT=8080 INGRESS_PORT_HTTPS=8443"
  [mt-broker-filter]="NAMESPACE=knative-eventing CONTAINER_NAME=filter CONFIG_OBSERVABILITY_NAME=config-observability METRICS_DOMAIN=knative.dev/internal/eventing FILTER_PORT=8080 FILTER_PORT_HTTPS=8443"
  [imc-controller]="WEBHOOK_NAME=inmemorychannel-webhook WEBHOOK_PORT=8443 CONFIG_OBSERVABILITY_NAME=config-observability METRICS_DOMAIN=knative.dev/inmemorychannel-controller DISPATCHER_IMAGE=ko://knative.dev/eventing/cmd/in_memory/channel_dispatcher"
  [imc-dispatcher]="CONTAINER_NAME=dispatcher CONFIG_OBSERVABILITY_NAME=config-observability METRICS_DOMAIN=knative.dev/inmemorychannel-dispatcher MAX_IDLE_CONNS=1000 MAX_IDLE_CONNS_PER_HOST=1000"
  [serving-controller]="CONFIG_OBSERVABILITY_NAME=config-observability METRICS_DOMAIN=knative.dev/internal/serving"
  [serving-webhook]="CONFIG_OBSERVABILITY_NAME=config-observability WEBHOOK_NAME=webhook WEBHOOK_PORT=8443 METRICS_DOMAIN=knative.dev/internal/serving")
# The Deployment (in config/) each process stands for.
declare -A DEPLOYMENT=(
  [eventing-controller]=eventing-controller [eventing-webhook]=eventing-webhook
  [pingsource-mt-adapter]=pingsource-mt-adapter [mt-broker-controller]=mt-broker-controller
  [mt-broker-ingress]=mt-broker-ingress [mt-broker-filter]=mt-broker-filter
  [imc-controller]=imc-controller [imc-dispatcher]=imc-dispatcher
  [serving-controller]=controller [serving-webhook]=webhook)

# module_of NAME, ns_of NAME, bin_of NAME: NAME's module, its namespace,
# and its binary. bin_dir MODULE: where the module's binaries go (Serving's
# in a directory of its own: both modules have a cmd/controller and a
# cmd/webhook; Eventing's where they were before Serving ran).
module_of() { echo "${MODULE[$1]:-eventing}"; }
ns_of() { echo "${NAMESPACE[$(module_of "$1")]}"; }
bin_dir() { if [ "$1" = eventing ]; then echo "$BIN"; else echo "$BIN/$1"; fi; }
bin_of() { echo "$(bin_dir "$(module_of "$1")")/${CMD[$1]##*/}"; }

say() { printf '[knative] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

pidfile() { echo "$RUN/$1.pid"; }
logfile() { echo "$LOGS/$1.log"; }

. "$REPO/e2e/procs.sh"

# launch NAME CMD...: CMD detached, appending to NAME's log (procs.sh).
launch() {
  local name=$1
  shift
  procs_launch "$(pidfile "$name")" "$(logfile "$name")" "$name" "$@"
}

# pid_of NAME: the recorded PID if that process is alive and ours (its
# command line names KNATIVE_DIR: every one started here has it there).
pid_of() { procs_pid "$(pidfile "$1")" "$KNATIVE_DIR"; }
running() { [ -n "$(pid_of "$1")" ]; }

kube_env() {
  eval "$("$KUBE" env)"
  [ -n "${KUBE_NETNS_PID:-}" ] || die "kube.sh's namespace is not running (e2e/kube/kube.sh start)"
  KC=("$KUBECTL" --kubeconfig "$KUBECONFIG")
}
# in_node CMD...: CMD in the node's network and mount namespaces.
in_node() { nsenter -t "$KUBE_NETNS_PID" -n -m -- "$@"; }

# ------------------------------------------------------------------ install

# module_dir PATH VERSION: a module's directory in the Go module cache
# (downloaded when missing).
module_dir() {
  (cd "$REPO/e2e/packaging" && GOFLAGS=-mod=mod go mod download -json "$1@$2") |
    sed -n 's/^\t"Dir": "\(.*\)",$/\1/p'
}
# knative_module MODULE: knative.dev/MODULE's directory at its version.
knative_module() { module_dir "knative.dev/$1" "${VERSION[$1]}"; }

# built NAME: NAME's binary is a build of its module at its version (the
# module version the Go toolchain stamped into it, not a marker file).
# (grep -c, not -q: an early exit would be a SIGPIPE failure under pipefail)
built() {
  local module
  module=$(module_of "$1")
  [ -x "$(bin_of "$1")" ] && [ "$(go version -m "$(bin_of "$1")" 2>/dev/null |
    grep -cE "^[[:space:]]+(mod|dep)[[:space:]]+knative.dev/$module[[:space:]]+${VERSION[$module]}([[:space:]]|$)")" != 0 ]
}

# cache_key NAME: NAME's binary in the machine's tool cache.
cache_key() {
  local module
  module=$(module_of "$1")
  echo "knative-$module-${CMD[$1]##*/}-${VERSION[$module]}-$(go env GOOS)-$(go env GOARCH)"
}

cmd_install() {
  . "$REPO/e2e/toolcache.sh"
  local module
  for module in "${MODULES[@]}"; do install_module "$module"; done
}

# install_module MODULE: its commands, from the tool cache or built.
install_module() {
  local module=$1 name missing=() version=${VERSION[$1]}
  local out mod=$KNATIVE_DIR/build
  out=$(bin_dir "$module")
  [ "$module" = eventing ] || mod=$KNATIVE_DIR/build-$module
  mkdir -p "$out"
  for name in "${PODS[@]}"; do
    [ "$(module_of "$name")" = "$module" ] || continue
    if built "$name"; then
      toolcache_has "$(cache_key "$name")" || toolcache_put "$(cache_key "$name")" "$(bin_of "$name")"
    elif toolcache_get "$(cache_key "$name")" "$(bin_of "$name")" && built "$name"; then
      say "$module's ${CMD[$name]} $version copied from the machine's tool cache"
    else
      missing+=("knative.dev/$module/cmd/${CMD[$name]}")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local start=$SECONDS p
  mkdir -p "$mod"
  # One scratch module per Knative module (each built with the versions
  # of its own release), one `go build` of every missing command:
  # packages shared between them are compiled once.
  printf 'module knativebuild\n\ngo 1.24.0\n' > "$mod/go.mod"
  {
    printf '//go:build tools\n\n// Package knativebuild pins the Knative commands knative.sh builds.\npackage knativebuild\n\nimport (\n'
    for p in "${missing[@]}"; do printf '\t_ "%s"\n' "$p"; done
    printf ')\n'
  } > "$mod/tools.go"
  say "building ${#missing[@]} $module $version commands from the module proxy (minutes on 2 cores)"
  (
    cd "$mod"
    GOFLAGS=-mod=mod go get "knative.dev/$module@$version" >&2
    GOFLAGS=-mod=mod go mod tidy >&2
    GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/" "${missing[@]}" >&2
  )
  for name in "${PODS[@]}"; do
    [ "$(module_of "$name")" = "$module" ] || continue
    built "$name" || die "built $(bin_of "$name") does not carry knative.dev/$module $version"
    toolcache_put "$(cache_key "$name")" "$(bin_of "$name")"
  done
  say "built ${#missing[@]} $module commands in $((SECONDS - start))s"
}

# ------------------------------------------------------------------ start

# The bridge the pods join, and the service range made local in the node.
# The bridge's MAC address is set, not inherited: a Linux bridge takes
# the lowest MAC of its ports, so each pod's veth added later could change
# it, and a pod that had already resolved the node's address kept sending
# to the old one, which the bridge no longer takes as its own. Its replies
# were lost until its neighbour entry went stale and was probed again
# (about 10 s): the API server's first call to the webhook after an idle
# spell timed out (seen as helm's "failed calling webhook ... context
# deadline exceeded").
BRIDGE_MAC=02:42:0a:f4:00:01
# (ip, not /sys/class/net: the node's mount namespace has the host's sysfs)
bridge_mac() { in_node ip -br link show "$BRIDGE" | awk '{print $3}'; }

start_network() {
  if ! in_node ip link show "$BRIDGE" >/dev/null 2>&1; then
    in_node ip link add "$BRIDGE" type bridge
    in_node ip addr add "$NODE_IP/24" dev "$BRIDGE"
    in_node ip link set "$BRIDGE" up
  fi
  if [ "$(bridge_mac)" != "$BRIDGE_MAC" ]; then
    in_node ip link set "$BRIDGE" address "$BRIDGE_MAC"
    # pods of an earlier start resolved the old address
    local name pid
    for name in "${PODS[@]}"; do
      pid=$(pid_of "$name")
      [ -z "$pid" ] || nsenter -t "$pid" -n -- ip neigh flush dev eth0 2>/dev/null || true
    done
  fi
  # (grep -c, not -q: see built)
  [ "$(in_node ip route show table local | grep -c "^local $SERVICE_CIDR ")" != 0 ] ||
    in_node ip route add local "$SERVICE_CIDR" dev lo
}

# apply_config: config/ of each module, as released. Webhook
# configurations left by an earlier run are deleted first: with the
# webhook not yet running they would refuse these very writes
# (failurePolicy: Fail); the webhook fills the new ones in when it starts.
# So are the leader leases of an earlier run's processes: a new process
# would wait each one out.
apply_config() {
  local dir module
  for module in "${MODULES[@]}"; do
    dir=$(knative_module "$module")
    [ -d "$dir/config/core" ] || die "$module's config/ not found in the module cache"
    "${KC[@]}" delete mutatingwebhookconfigurations,validatingwebhookconfigurations \
      -l "app.kubernetes.io/name=knative-$module" --ignore-not-found >/dev/null
    # Server-side apply: idempotent, and no last-applied annotation on the
    # large CRDs. The namespace first: everything else lives in it.
    "${KC[@]}" apply --server-side --force-conflicts -f "$dir/config/core/100-namespace.yaml" >/dev/null
    "${KC[@]}" -n "${NAMESPACE[$module]}" delete leases --all --ignore-not-found >/dev/null
  done
  dir=$(knative_module eventing)
  "${KC[@]}" apply --server-side --force-conflicts -R -f "$dir/config/core" \
    -f "$dir/config/brokers/mt-channel-broker" -f "$dir/config/channels/in-memory-channel" > "$LOGS/apply.log"
  "${KC[@]}" wait --for condition=Established --timeout 60s crd/inmemorychannels.messaging.knative.dev \
    crd/brokers.eventing.knative.dev crd/triggers.eventing.knative.dev crd/pingsources.sources.knative.dev \
    crd/sinkbindings.sources.knative.dev crd/subscriptions.messaging.knative.dev >/dev/null
  apply_serving_config
}

# apply_serving_config: what Serving's release (serving-core.yaml) holds:
# its config/core, with the networking and caching CRDs and config-network
# that its repository links in from knative.dev/networking and
# knative.dev/caching (a module keeps no symlinks), at the versions
# Serving's go.mod requires. The CRDs go first: config/core holds objects
# of their kinds (the queue-proxy Image, the cluster certificate).
apply_serving_config() {
  local dir net cache
  dir=$(knative_module serving)
  net=$(module_dir knative.dev/networking "$(awk '$1 == "knative.dev/networking" { print $2 }' "$dir/go.mod")")
  cache=$(module_dir knative.dev/caching "$(awk '$1 == "knative.dev/caching" { print $2 }' "$dir/go.mod")")
  [ -f "$net/config/ingress.yaml" ] && [ -f "$cache/config/image.yaml" ] ||
    die "knative.dev/networking's or knative.dev/caching's config/ not found in the module cache"
  "${KC[@]}" apply --server-side --force-conflicts -f "$net/config/certificate.yaml" -f "$net/config/domain-claim.yaml" \
    -f "$net/config/ingress.yaml" -f "$net/config/serverlessservice.yaml" -f "$cache/config/image.yaml" > "$LOGS/apply-serving.log"
  "${KC[@]}" wait --for condition=Established --timeout 60s crd/certificates.networking.internal.knative.dev \
    crd/clusterdomainclaims.networking.internal.knative.dev crd/ingresses.networking.internal.knative.dev \
    crd/serverlessservices.networking.internal.knative.dev crd/images.caching.internal.knative.dev >/dev/null
  "${KC[@]}" apply --server-side --force-conflicts -R -f "$dir/config/core" -f "$net/config/config-network.yaml" >> "$LOGS/apply-serving.log"
}

# pod_kubeconfig NAME: a kubeconfig for NAME's service account (a one-day
# TokenRequest token) at the API server's ClusterIP, the address pods use.
pod_kubeconfig() {
  local name=$1 token
  token=$("${KC[@]}" -n "$(ns_of "$name")" create token "${SA[$name]}" --duration 24h)
  (
    umask 077
    cat > "$RUN/$name.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://10.96.0.1:443
    certificate-authority: $KUBE_DIR/pki/ca.crt
users:
- name: ${SA[$name]}
  user:
    token: $token
contexts:
- name: local
  context: {cluster: local, user: "${SA[$name]}"}
current-context: local
EOF
  )
}

# start_pod NAME: NAME's binary in a network namespace of its own inside
# the node (unshare), wired to the bridge before the binary is exec'd; the
# PID recorded is the binary's own (nsenter, unshare and bash exec).
start_pod() {
  local name=$1 ip=${IP[$1]} pid gate veth env=()
  gate=$RUN/$name.gate
  rm -f "$gate"
  pod_kubeconfig "$name"
  env=(KNATIVE_DIR="$KNATIVE_DIR" KUBECONFIG="$RUN/$name.kubeconfig" SYSTEM_NAMESPACE="$(ns_of "$name")" POD_NAME="$name"
    CONFIG_LOGGING_NAME=config-logging ${ENV[$name]})
  launch "$name" nsenter -t "$KUBE_NETNS_PID" -m -- unshare --net -- \
    bash -c 'while [ ! -e "$1" ]; do sleep 0.05; done; shift; exec env -i PATH=/usr/bin:/bin "$@"' _ \
    "$gate" "${env[@]}" "$(bin_of "$name")"
  pid=$(cat "$(pidfile "$name")")
  # wait until unshare has made the new namespace
  local node_net
  node_net=$(readlink "/proc/$KUBE_NETNS_PID/ns/net")
  for _ in $(seq 1 100); do
    [ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" != "$node_net" ] &&
      [ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" != "$(readlink /proc/self/ns/net)" ] && break
    sleep 0.05
  done
  veth=kn${ip##*.}
  in_node ip link del "$veth" 2>/dev/null || true
  in_node ip link add "$veth" type veth peer name eth0 netns "$pid"
  in_node ip link set "$veth" master "$BRIDGE" up
  nsenter -t "$pid" -n -- ip link set lo up
  nsenter -t "$pid" -n -- ip addr add "$ip/24" dev eth0
  nsenter -t "$pid" -n -- ip link set eth0 up
  nsenter -t "$pid" -n -- ip route add default via "$NODE_IP"
  touch "$gate"
}

# mark_running NAME: what a kubelet would report for NAME's process: its
# Services' Endpoints and its Deployment's Available condition.
mark_running() {
  local name=$1 svc ports now gen ns
  ns=$(ns_of "$name")
  for svc in ${SERVICES[$name]:-}; do
    ports=$("${KC[@]}" -n "$ns" get svc "$svc" -o jsonpath='{range .spec.ports[*]}{.name}{" "}{.targetPort}{"\n"}{end}' |
      awk 'NF == 2 { printf "%s{\"name\":\"%s\",\"port\":%s}", sep, $1, $2; sep = "," }')
    # (kubectl warns that v1 Endpoints is deprecated: Knative 0.42 reads them)
    "${KC[@]}" apply --server-side --force-conflicts --field-manager knative.sh -f - > /dev/null 2> >(grep -v "v1 Endpoints is deprecated" >&2) <<EOF
{"apiVersion": "v1", "kind": "Endpoints",
 "metadata": {"name": "$svc", "namespace": "$ns"},
 "subsets": [{"addresses": [{"ip": "${IP[$name]}"}], "ports": [$ports]}]}
EOF
  done
  now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  gen=$("${KC[@]}" -n "$ns" get deployment "${DEPLOYMENT[$name]}" -o jsonpath='{.metadata.generation}')
  "${KC[@]}" -n "$ns" patch deployment "${DEPLOYMENT[$name]}" --subresource status --type merge -p \
    "{\"status\":{\"observedGeneration\":$gen,\"replicas\":1,\"updatedReplicas\":1,\"readyReplicas\":1,\"availableReplicas\":1,\"conditions\":[{\"type\":\"Available\",\"status\":\"True\",\"reason\":\"LocalProcess\",\"message\":\"run by e2e/kube/knative.sh\",\"lastUpdateTime\":\"$now\",\"lastTransitionTime\":\"$now\"}]}}" >/dev/null
}

# The Services' ClusterIP:port -> the backing process, one forwarder in
# the node. A forwarder already running is kept when it carries the same
# Services (an earlier start's, with fewer processes, is replaced).
start_services() {
  local specs=("in:10.96.0.1:443=127.0.0.1:6443") name svc cip port target ns
  for name in "${PODS[@]}"; do
    ns=$(ns_of "$name")
    for svc in ${SERVICES[$name]:-}; do
      cip=$("${KC[@]}" -n "$ns" get svc "$svc" -o jsonpath='{.spec.clusterIP}')
      while read -r port target; do
        # Knative addresses its Services on 80 and 443 only; the metrics
        # ports would collide with the node's own listeners (kube.sh
        # forwards Prometheus on *:9090 there).
        case $port in 80 | 443) specs+=("in:$cip:$port=${IP[$name]}:$target") ;; esac
      done < <("${KC[@]}" -n "$ns" get svc "$svc" -o jsonpath='{range .spec.ports[*]}{.port}{" "}{.targetPort}{"\n"}{end}')
    done
  done
  if running services; then
    [ "$(cat "$RUN/services.specs" 2>/dev/null)" != "${specs[*]}" ] || return 0
    say "the Service forwarder carries other Services; restarting it"
    stop_all services
  fi
  echo "${specs[*]}" > "$RUN/services.specs"
  rm -f "$RUN/services.ready"
  launch services nsenter -t "$KUBE_NETNS_PID" -n -m -- "$KUBE_BIN/nsforward" \
    -netns "/proc/$KUBE_NETNS_PID/ns/net" -ready "$RUN/services.ready" "${specs[@]}"
  for _ in $(seq 1 100); do [ -f "$RUN/services.ready" ] && return 0; running services || break; sleep 0.1; done
  tail -n 20 "$(logfile services)" >&2
  die "the Service forwarder did not start"
}

# hostsync: every 2 s, the node's /etc/hosts block of Service names, as
# cluster DNS would answer them (ExternalName: the target's address).
hostsync_loop() {
  local hosts=$KUBE_DIR/run/hosts begin="# knative.sh: Services" end="# knative.sh: end" block old
  while :; do
    block=$("${KC[@]}" get svc -A -o jsonpath='{range .items[*]}{.metadata.name}{"|"}{.metadata.namespace}{"|"}{.spec.type}{"|"}{.spec.clusterIP}{"|"}{.spec.externalName}{"\n"}{end}' 2>/dev/null |
      awk -F'|' '$3 != "ExternalName" && $4 != "None" && $4 != "" {
                   ip[$1 "." $2 ".svc.cluster.local"] = $4; print $4, $1 "." $2 ".svc.cluster.local", $1 "." $2 ".svc" }
                 $3 == "ExternalName" { ext[$1 "." $2] = $5 }
                 END { for (n in ext) { t = ext[n]; sub(/\.$/, "", t); if (t in ip) print ip[t], n ".svc.cluster.local", n ".svc" } }' | sort) || true
    old=$(sed -n "/^$begin\$/,/^$end\$/p" "$hosts" | sed '1d;$d')
    if [ "$block" != "$old" ]; then
      # in place (the node sees this inode through a bind mount)
      { sed "/^$begin\$/,/^$end\$/d" "$hosts"; echo "$begin"; [ -z "$block" ] || echo "$block"; echo "$end"; } > "$hosts.new"
      cat "$hosts.new" > "$hosts"
      rm -f "$hosts.new"
    fi
    sleep 2
  done
}
start_hostsync() {
  running hostsync && return 0
  launch hostsync "$0" hostsync-loop "$KNATIVE_DIR"
}

# webhook_ready NAME: the webhook has filled its configurations in (the
# CA bundle) and answers the API server: a dry-run object it must refuse
# is refused by its validation (Eventing: a PingSource with a bad
# schedule; Serving: a Service asking a longer timeout than
# config-defaults allows, which the CRD schema does not check).
webhook_ready() {
  local out config object
  case $1 in
    eventing-webhook)
      config=validation.webhook.eventing.knative.dev
      object='{"apiVersion": "sources.knative.dev/v1", "kind": "PingSource", "metadata": {"name": "probe"},
        "spec": {"schedule": "not a cron", "sink": {"uri": "http://example.invalid"}}}' ;;
    serving-webhook)
      config=validation.webhook.serving.knative.dev
      object='{"apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": {"name": "probe"},
        "spec": {"template": {"spec": {"timeoutSeconds": 100000, "containers": [{"image": "example.invalid/probe@sha256:0000000000000000000000000000000000000000000000000000000000000000"}]}}}}' ;;
    *) die "webhook_ready: no probe for $1" ;;
  esac
  [ -n "$("${KC[@]}" get validatingwebhookconfiguration "$config" -o jsonpath='{.webhooks[0].clientConfig.caBundle}' 2>/dev/null)" ] || return 1
  out=$("${KC[@]}" -n default create --dry-run=server -f - 2>&1 <<< "$object" || true)
  grep -q "admission webhook \"$config\" denied" <<< "$out"
}

wait_until() {
  local what=$1 secs=$2 deadline=$((SECONDS + $2)); shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || { say "$what not ready after ${secs}s"; return 1; }
    sleep 0.5
  done
}

# up NAME: the process is alive, else its log's end and a failure.
check_alive() {
  running "$1" && return 0
  say "$1 exited; last lines of $(logfile "$1"):"
  tail -n 30 "$(logfile "$1")" >&2
  return 1
}

cmd_start() {
  "$KUBE" start
  kube_env
  cmd_install
  mkdir -p "$RUN" "$LOGS"
  local t0=$SECONDS name
  start_network
  apply_config
  start_services
  start_hostsync
  for name in "${PODS[@]}"; do
    running "$name" || start_pod "$name"
    if [[ " ${WEBHOOKS[*]} " == *" $name "* ]]; then
      wait_until "$name" "$KNATIVE_READY_TIMEOUT" webhook_ready "$name" || { check_alive "$name"; die "$name did not come up"; }
    fi
  done
  sleep 2
  for name in "${PODS[@]}"; do check_alive "$name" || die "$name did not start"; done
  for name in "${PODS[@]}"; do mark_running "$name"; done
  [ "$(bridge_mac)" = "$BRIDGE_MAC" ] || die "the bridge's MAC address changed as pods joined"
  say "Eventing $EVENTING_VERSION, Serving $SERVING_VERSION's controller and webhook up in $((SECONDS - t0))s (logs: $LOGS)"
}

# stop_all NAME...: TERM to every one at once, KILL to what still runs 5 s
# later: Knative's webhooks keep serving for a drain period after TERM (for
# a load balancer to notice), and nothing here balances.
stop_all() {
  local name pid pids=()
  for name in "$@"; do
    pid=$(pid_of "$name")
    [ -z "$pid" ] || { kill -TERM "$pid" 2>/dev/null || true; pids+=("$name"); }
  done
  for _ in $(seq 1 20); do
    local left=()
    for name in "${pids[@]}"; do [ -z "$(pid_of "$name")" ] || left+=("$name"); done
    [ ${#left[@]} -gt 0 ] || break
    sleep 0.25
  done
  for name in "$@"; do
    pid=$(pid_of "$name")
    if [ -n "$pid" ]; then
      say "$name (pid $pid) still running 5 s after TERM; sending KILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$(pidfile "$name")"
  done
}

cmd_stop() {
  # Knative's webhook configurations refuse writes (failurePolicy: Fail)
  # once nothing answers them; gone, the API server stays usable.
  if eval "$("$KUBE" env)" 2>/dev/null && [ -n "${KUBECTL:-}" ] && [ -x "$KUBECTL" ]; then
    "$KUBECTL" --kubeconfig "$KUBECONFIG" --request-timeout 5s delete mutatingwebhookconfigurations,validatingwebhookconfigurations \
      -l 'app.kubernetes.io/name in (knative-eventing, knative-serving)' --ignore-not-found >/dev/null 2>&1 || true
  fi
  stop_all hostsync "${PODS[@]}"
  stop_all services
  say "stopped"
}

cmd_status() {
  local rc=0 name pid
  for name in "${PODS[@]}" services hostsync; do
    pid=$(pid_of "$name")
    if [ -n "$pid" ]; then printf '%-24s %-8s up\n' "$name" "$pid"; else printf '%-24s %-8s down\n' "$name" -; rc=1; fi
  done
  return $rc
}

cmd_env() {
  echo "export KNATIVE_DIR=$KNATIVE_DIR"
  echo "export KNATIVE_NODE_IP=$NODE_IP"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) cmd_env ;;
  hostsync-loop) kube_env; hostsync_loop ;;
  logs) tail -n "${2:-50}" "$(logfile "${1:?usage: knative.sh logs NAME [LINES]}")" ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac

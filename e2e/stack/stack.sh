#!/usr/bin/env bash
# The local stack: the three real servers the tests and the demo run
# against, all on 127.0.0.1, all under one directory (.cache/ of the repo).
#   cassandra  Cassandra 5.0 from Maven Central jars on JDK 17   :9042
#   vm         VictoriaMetrics (Debian package)                   :8428
#   prom       Prometheus (Debian package)                        :9090
# and, only when named (not part of "all"):
#   cassandra-tls  a second Cassandra from the same jars with client
#              encryption required (TLS and a client certificate), on its own
#              ports and directory; certificates from certs.sh, fresh at
#              every start                                        :9142
#
# Usage: stack.sh COMMAND [all|cassandra|vm|prom|cassandra-tls ...]   (default: all)
#   install   install what is missing (packages, Cassandra jars); no network
#             when everything is there
#   start     install, then start what is not running, wait until each
#             answers (CQL query / HTTP health); a no-op when all are up
#   stop      stop by PID: TERM, wait, then KILL
#   restart   stop, then start
#   status    one line per server: name, pid, address, up/down (exit 1 if
#             any is down)
#   check     prove the features the project needs: LWT and TTL on
#             Cassandra, import-then-query on VictoriaMetrics, Prometheus's
#             out-of-order window
#   logs NAME [LINES]   the tail of .cache/logs/NAME.log
#   env       export lines for TEST_CASSANDRA_HOSTS, TEST_VM_URL, TEST_PROM_URL
#   nodetool ARGS...    Cassandra's nodetool against the local node
#
# Settings (environment):
#   STACK_DIR           root of jars, data, logs, pid files (<repo>/.cache)
#   CASSANDRA_VERSION   a 5.0.x to use; unset: keep the installed one, or on a
#                       first install take the newest of CASSANDRA_CANDIDATES
#                       that Maven Central serves
#   CASSANDRA_PORT (9042)  CASSANDRA_STORAGE_PORT (7000)  CASSANDRA_JMX_PORT (7199)
#   CASSANDRA_HEAP (1g)  CASSANDRA_READY_TIMEOUT (180 seconds)
#   VM_PORT (8428)  VM_RETENTION (7d)  PROM_PORT (9090)  PROM_RETENTION (2d)
#   SIM_ADDR (127.0.0.1:9401)  the NVCF simulator both TSDBs scrape
#   CASSANDRA_TLS_DIR (STACK_DIR/cassandra-tls)  cassandra-tls's data, log,
#                       pid file and certs/ (a test points it at a temp dir)
#   CASSANDRA_TLS_PORT (9142)  CASSANDRA_TLS_STORAGE_PORT (7012)
#   CASSANDRA_TLS_HEAP (512m)
#   JAVA                a JDK 17 java binary to use instead of the one on PATH
#   CASSANDRA_EXTRA_JVM_OPTS  more JVM options for cassandra (split on spaces),
#                       e.g. to measure a JIT or GC setting against a fresh JVM
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
STACK_DIR=${STACK_DIR:-$REPO/.cache}
mkdir -p "$STACK_DIR"
# The physical path: servers are recognised by it in their command lines,
# and a worktree reaching the same directory through a .cache symlink must
# see them as its own (with the logical path it found them "not running",
# and a stop removed their PID files).
STACK_DIR=$(cd "$STACK_DIR" && pwd -P)

CASSANDRA_VERSION=${CASSANDRA_VERSION:-}
# Newest first. 5.0.10 was not on Maven Central when this list was written.
CASSANDRA_CANDIDATES=${CASSANDRA_CANDIDATES:-"5.0.9 5.0.8 5.0.7 5.0.6"}
CASSANDRA_PORT=${CASSANDRA_PORT:-9042}
CASSANDRA_STORAGE_PORT=${CASSANDRA_STORAGE_PORT:-7000}
CASSANDRA_JMX_PORT=${CASSANDRA_JMX_PORT:-7199}
CASSANDRA_HEAP=${CASSANDRA_HEAP:-1g}
CASSANDRA_READY_TIMEOUT=${CASSANDRA_READY_TIMEOUT:-180}
VM_PORT=${VM_PORT:-8428}
VM_RETENTION=${VM_RETENTION:-7d}
PROM_PORT=${PROM_PORT:-9090}
PROM_RETENTION=${PROM_RETENTION:-2d}
SIM_ADDR=${SIM_ADDR:-127.0.0.1:9401}
SIM_DEFAULT=127.0.0.1:9401
CASSANDRA_TLS_DIR=${CASSANDRA_TLS_DIR:-$STACK_DIR/cassandra-tls}
CASSANDRA_TLS_PORT=${CASSANDRA_TLS_PORT:-9142}
CASSANDRA_TLS_STORAGE_PORT=${CASSANDRA_TLS_STORAGE_PORT:-7012}
CASSANDRA_TLS_HEAP=${CASSANDRA_TLS_HEAP:-512m}

RUN=$STACK_DIR/run
LOGS=$STACK_DIR/logs
BIN=$STACK_DIR/bin
CDIR=$STACK_DIR/cassandra

SERVERS=(cassandra vm prom)

say() { printf '[stack] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# ------------------------------------------------------------------ packages

APT_UPDATED=""
# apt_install PKG...: installs the packages that are not installed; the
# package lists are refreshed only when something is missing.
apt_install() {
  local p missing=()
  for p in "$@"; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" = "install ok installed" ] || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  if [ -z "$APT_UPDATED" ]; then
    say "apt-get update (missing: ${missing[*]})"
    "${sudo[@]}" apt-get update -qq || die "apt-get update failed"
    APT_UPDATED=1
  fi
  say "installing Debian packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    die "apt-get install ${missing[*]} failed"
}

# need CMD PKG: installs PKG when CMD is not on PATH.
need() { command -v "$1" >/dev/null 2>&1 || apt_install "$2"; }

# java_bin: prints a JDK 17 java. Cassandra 5.0 runs on 11 or 17 only, and
# the module flags below are 17's, so any other major version on PATH is
# passed over for Debian's openjdk-17.
java_bin() {
  if [ -n "${JAVA:-}" ]; then echo "$JAVA"; return; fi
  if command -v java >/dev/null 2>&1 && [ "$(java_major java)" = 17 ]; then echo java; return; fi
  apt_install openjdk-17-jre-headless
  local j
  for j in /usr/lib/jvm/java-17-openjdk-*/bin/java; do
    [ -x "$j" ] && { echo "$j"; return; }
  done
  die "no JDK 17 java after installing openjdk-17-jre-headless; set JAVA=/path/to/java"
}

java_major() {
  "$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p'
}

# ------------------------------------------------------------------ processes

. "$REPO/e2e/procs.sh"

# cassandra-tls keeps its pid file and log in its own directory, so that a
# test can run one in a temp dir beside the shared stack.
pidfile() {
  case $1 in
    cassandra-tls) echo "$CASSANDRA_TLS_DIR/cassandra-tls.pid" ;;
    *) echo "$RUN/$1.pid" ;;
  esac
}
logfile() {
  case $1 in
    cassandra-tls) echo "$CASSANDRA_TLS_DIR/cassandra-tls.log" ;;
    *) echo "$LOGS/$1.log" ;;
  esac
}

# pid_of NAME: the recorded PID if that process is alive and is ours (its
# command line names STACK_DIR); a stale or reused PID prints nothing.
pid_of() { procs_pid "$(pidfile "$1")" "$STACK_DIR"; }

running() { [ -n "$(pid_of "$1")" ]; }

# port_taken PORT: something accepts connections on 127.0.0.1:PORT.
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# launch NAME CMD...: starts CMD detached, appending to NAME's log, and
# records its PID (e2e/procs.sh).
launch() {
  local name=$1
  shift
  procs_launch "$(pidfile "$name")" "$(logfile "$name")" "$name" "$@"
}

# wait_ready NAME SECONDS: polls NAME_ready every second until it answers;
# on a crash or a timeout prints the end of the log and fails.
wait_ready() { procs_wait "$1" "$2" 1 40 "${1}_ready"; }

# stop_server NAME: TERM, up to 30 s for a clean exit (Cassandra drains its
# memtables), then KILL.
stop_server() {
  local name=$1 pid
  pid=$(pid_of "$name")
  if [ -z "$pid" ]; then
    rm -f "$(pidfile "$name")"
    say "$name not running"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do
    [ -n "$(pid_of "$name")" ] || break
    sleep 0.5
  done
  if [ -n "$(pid_of "$name")" ]; then
    say "$name (pid $pid) still running 30 s after TERM; sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do [ -n "$(pid_of "$name")" ] || break; sleep 0.25; done
  fi
  # A JVM's main thread can exit (the leader shows as a zombie) while its
  # other threads still finish shutting down and hold the ports; a restart
  # must wait for the ports, not only the PID.
  local p
  for p in $("${name}_ports"); do
    for _ in $(seq 1 120); do port_taken "$p" || break; sleep 0.25; done
  done
  rm -f "$(pidfile "$name")"
  say "$name stopped (pid $pid)"
}

http_ok() { curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null; }

# scrape_config FILE OUT: the repo's scrape config as is, or a copy aimed at
# SIM_ADDR when that was changed.
scrape_config() {
  if [ "$SIM_ADDR" = "$SIM_DEFAULT" ]; then echo "$1"; return; fi
  sed "s#$SIM_DEFAULT#$SIM_ADDR#g" "$1" > "$2"
  echo "$2"
}

# ------------------------------------------------------------------ cassandra

cassandra_addr() { echo "127.0.0.1:$CASSANDRA_PORT"; }
cassandra_ports() { echo "$CASSANDRA_PORT $CASSANDRA_STORAGE_PORT $CASSANDRA_JMX_PORT"; }

# The version whose jars are complete in lib/ (written last by the install).
cassandra_installed() {
  if [ -f "$CDIR/lib/.version" ]; then cat "$CDIR/lib/.version"; return; fi
  local m
  for m in "$CDIR"/lib/.complete-*; do # marker of an earlier layout
    [ -e "$m" ] && { echo "${m##*/.complete-}"; return; }
  done
  return 0
}

# fetch_cassandra VERSION DIR: cassandra-all VERSION and its runtime
# dependencies into DIR. Maven's local repository is tried offline first,
# so a machine that fetched them once needs no network.
fetch_cassandra() {
  local v=$1 dir=$2
  local mvn_args=(-B -Dstyle.color=never -f "$HERE/cassandra/pom.xml" -Dcassandra.version="$v"
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$dir")
  rm -rf "$dir"; mkdir -p "$dir"
  if mvn -o -q "${mvn_args[@]}" > /dev/null 2>&1; then
    say "cassandra $v jars taken from Maven's local repository"
  else
    say "fetching cassandra-all $v and its dependencies from Maven Central"
    printf '\n===== %s: cassandra-all %s from Maven Central\n' "$(date -Is)" "$v" >> "$LOGS/maven.log"
    mvn -q "${mvn_args[@]}" >> "$LOGS/maven.log" 2>&1 || return 1
  fi
  [ -f "$dir/cassandra-all-$v.jar" ]
}

cassandra_install() {
  JAVA_CMD=$(java_bin)
  local have
  have=$(cassandra_installed)
  if [ -n "$have" ] && { [ -z "$CASSANDRA_VERSION" ] || [ "$have" = "$CASSANDRA_VERSION" ]; }; then
    return 0
  fi
  if running cassandra; then
    die "cassandra $have is running from $CDIR/lib; stop it before installing ${CASSANDRA_VERSION:-another version}"
  fi
  need mvn maven
  mkdir -p "$LOGS" "$CDIR"
  local v refused=() tmp=$CDIR/lib.partial
  for v in ${CASSANDRA_VERSION:-$CASSANDRA_CANDIDATES}; do
    if fetch_cassandra "$v" "$tmp"; then
      echo "$v" > "$tmp/.version"
      rm -rf "${CDIR:?}/lib"
      mv "$tmp" "$CDIR/lib"
      [ ${#refused[@]} -eq 0 ] || say "refused before $v: ${refused[*]} (see $LOGS/maven.log)"
      say "cassandra $v installed: $(find "$CDIR/lib" -name '*.jar' | wc -l) jars in $CDIR/lib"
      return 0
    fi
    refused+=("$v")
    # The first error of this attempt names the refused artifact and why.
    say "cassandra-all $v refused: $(awk '/^===== /{e=""} /\[ERROR\]/ && e=="" {e=$0} END{print e}' "$LOGS/maven.log" | cut -c1-400)"
  done
  rm -rf "$tmp"
  die "no Cassandra version could be fetched (refused: ${refused[*]}); see $LOGS/maven.log"
}

# cassandra_config DIR CQL_PORT STORAGE_PORT: conf/ under DIR.
cassandra_config() {
  local dir=$1 cql=$2 storage=$3
  mkdir -p "$dir/conf" "$dir/data" "$dir/triggers"
  sed -e "s#@DIR@#$dir#g" -e "s#@CQL_PORT@#$cql#g" -e "s#@STORAGE_PORT@#$storage#g" \
    "$HERE/cassandra/cassandra.yaml" > "$dir/conf/cassandra.yaml"
  cp "$HERE/cassandra/logback.xml" "$dir/conf/logback.xml"
}

# The module flags of Cassandra 5.0's conf/jvm17-server.options (JPMS and
# Netty sections): without them JDK 17 denies the internals Cassandra uses.
CASSANDRA_JVM17=(
  -Djdk.attach.allowAttachSelf=true
  --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
  --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
  --add-exports java.sql/java.sql=ALL-UNNAMED
  --add-exports java.base/java.lang.ref=ALL-UNNAMED
  --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
  --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
  --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
  --add-opens java.base/java.lang.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
  --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
  --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
  --add-opens java.base/jdk.internal.math=ALL-UNNAMED
  --add-opens java.base/jdk.internal.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
  --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
  --add-opens java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens java.base/java.io=ALL-UNNAMED
  --add-opens java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
  --add-opens java.base/java.lang=ALL-UNNAMED
  --add-opens java.base/java.util=ALL-UNNAMED
  -Dio.netty.tryReflectionSetAccessible=true
  -Dio.netty.allocator.useCacheForAllThreads=true
  -Dio.netty.allocator.maxOrder=11
)

cassandra_launch() {
  cassandra_config "$CDIR" "$CASSANDRA_PORT" "$CASSANDRA_STORAGE_PORT"
  say "starting cassandra $(cassandra_installed) on $(cassandra_addr) (heap $CASSANDRA_HEAP${CASSANDRA_EXTRA_JVM_OPTS:+, $CASSANDRA_EXTRA_JVM_OPTS})"
  local extra=()
  read -r -a extra <<< "${CASSANDRA_EXTRA_JVM_OPTS:-}"
  cassandra_jvm cassandra "$CDIR" "$CASSANDRA_HEAP" -Dcassandra.jmx.local.port="$CASSANDRA_JMX_PORT" "${extra[@]}"
}

# cassandra_jvm NAME DIR HEAP JVM_ARGS...: one Cassandra node from the
# installed jars with its conf/, data/ and triggers/ under DIR.
cassandra_jvm() {
  local name=$1 dir=$2 heap=$3; shift 3
  # G1 as in jvm17-server.options; the direct-memory cap and small caches in
  # cassandra.yaml keep the resident size near 1.5 GiB on a 1 GiB heap. Each
  # live table costs heap: 512 MiB ran out (OutOfMemoryError) at about 60
  # test keyspaces, reached when several people test against one stack.
  # ring_delay 0 and no gossip settling: a lone seed has nobody to wait for.
  launch "$name" "$JAVA_CMD" \
    -Xms"$heap" -Xmx"$heap" -Xss512k \
    -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1 -XX:MaxGCPauseMillis=300 \
    -XX:MaxDirectMemorySize=256m -XX:+ExitOnOutOfMemoryError \
    -Djava.net.preferIPv4Stack=true \
    "${CASSANDRA_JVM17[@]}" \
    -Dcassandra-foreground=yes \
    -Dcassandra.config="file://$dir/conf/cassandra.yaml" \
    -Dcassandra.storagedir="$dir/data" \
    -Dcassandra.logdir="$(dirname "$(logfile "$name")")" \
    -Dlogback.configurationFile="file://$dir/conf/logback.xml" \
    "$@" \
    -Dcassandra.triggers_dir="$dir/triggers" \
    -Dcassandra.skip_wait_for_gossip_to_settle=0 \
    -Dcassandra.ring_delay_ms=0 \
    -Dcassandra.superuser_setup_delay_ms=0 \
    -cp "$dir/conf:$CDIR/lib/*" \
    org.apache.cassandra.service.CassandraDaemon
}

# cqlping is built once (again only when its source changes); it answers
# only when a real CQL query succeeds, not when the port merely listens.
build_cqlping() {
  local src=$HERE/cqlping/main.go
  [ -x "$BIN/cqlping" ] && [ "$BIN/cqlping" -nt "$src" ] && return 0
  command -v go >/dev/null 2>&1 || die "go is needed to build $BIN/cqlping"
  mkdir -p "$BIN"
  say "building $BIN/cqlping"
  (cd "$REPO" && go build -o "$BIN/cqlping" ./e2e/stack/cqlping) || die "building cqlping failed"
}

# Builds cqlping when missing, so that status never reports a live node as
# down (run-tests.sh stops only what status called down before it started).
cassandra_ready() {
  [ -x "$BIN/cqlping" ] || build_cqlping
  "$BIN/cqlping" -q -hosts "$(cassandra_addr)" -timeout 3s 2>/dev/null
}

# ------------------------------------------------------------------ cassandra-tls

# A node that accepts only TLS clients presenting a certificate of the test
# CA: what the autoscaler's CASSANDRA_TLS_* settings are proven against.
# Cassandra reads PEM directly (PEMBasedSslContextFactory), so certs.sh's
# files serve it without a Java keystore. No JMX: nothing needs it, and
# one port fewer to collide with the shared node's.
cassandra-tls_addr() { echo "127.0.0.1:$CASSANDRA_TLS_PORT"; }
cassandra-tls_ports() { echo "$CASSANDRA_TLS_PORT $CASSANDRA_TLS_STORAGE_PORT"; }
cassandra-tls_install() { cassandra_install; }
cassandra-tls_ready() {
  [ -x "$BIN/cqlping" ] || build_cqlping
  "$BIN/cqlping" -q -hosts "$(cassandra-tls_addr)" -tls "$CASSANDRA_TLS_DIR/certs" -timeout 3s 2>/dev/null
}

cassandra-tls_launch() {
  local d=$CASSANDRA_TLS_DIR
  rm -rf "$d/certs"
  "$HERE/certs.sh" "$d/certs"
  cassandra_config "$d" "$CASSANDRA_TLS_PORT" "$CASSANDRA_TLS_STORAGE_PORT"
  cat >> "$d/conf/cassandra.yaml" <<YAML

# cassandra-tls: client encryption with a client certificate required.
client_encryption_options:
  enabled: true
  optional: false
  require_client_auth: true
  ssl_context_factory:
    class_name: org.apache.cassandra.security.PEMBasedSslContextFactory
  keystore: $d/certs/server-keystore.pem
  truststore: $d/certs/ca.pem
YAML
  say "starting cassandra-tls $(cassandra_installed) on $(cassandra-tls_addr) (heap $CASSANDRA_TLS_HEAP, certs in $d/certs)"
  # C1 only: a node that lives for one test gains nothing from C2, whose
  # compiling made its start ~25 s instead of ~18 s on the loaded 2 cores.
  cassandra_jvm cassandra-tls "$d" "$CASSANDRA_TLS_HEAP" -XX:TieredStopAtLevel=1
}

# ------------------------------------------------------------------ victoria-metrics

vm_addr() { echo "http://127.0.0.1:$VM_PORT"; }
vm_ports() { echo "$VM_PORT"; }
vm_install() { need victoria-metrics victoria-metrics; }
vm_ready() { http_ok "$(vm_addr)/health"; }

vm_launch() {
  mkdir -p "$STACK_DIR/vm/data"
  local cfg
  cfg=$(scrape_config "$HERE/vm-scrape.yml" "$STACK_DIR/vm/scrape.yml")
  say "starting victoria-metrics on $(vm_addr)"
  # latencyOffset 0 and no response cache: samples a test imports, even
  # back-dated ones, are returned by the next query instead of up to 30 s
  # later or never (a cached range would hide backfilled points).
  # maxQueryLen: a bucket's batched selector lists many version ids.
  launch vm victoria-metrics \
    -httpListenAddr="127.0.0.1:$VM_PORT" \
    -storageDataPath="$STACK_DIR/vm/data" \
    -retentionPeriod="$VM_RETENTION" \
    -promscrape.config="$cfg" -promscrape.configCheckInterval=5s \
    -search.latencyOffset=0s -search.disableCache \
    -search.maxQueryLen=4MB \
    -memory.allowedPercent=20
}

# ------------------------------------------------------------------ prometheus

prom_addr() { echo "http://127.0.0.1:$PROM_PORT"; }
prom_ports() { echo "$PROM_PORT"; }
prom_install() { need prometheus prometheus; }
prom_ready() { http_ok "$(prom_addr)/-/ready"; }

prom_launch() {
  mkdir -p "$STACK_DIR/prom/data"
  local cfg
  cfg=$(scrape_config "$HERE/prometheus.yml" "$STACK_DIR/prom/prometheus.yml")
  say "starting prometheus on $(prom_addr)"
  launch prom prometheus \
    --config.file="$cfg" \
    --storage.tsdb.path="$STACK_DIR/prom/data" \
    --storage.tsdb.retention.time="$PROM_RETENTION" \
    --web.listen-address="127.0.0.1:$PROM_PORT" \
    --web.enable-remote-write-receiver --web.enable-admin-api --web.enable-lifecycle
}

# ------------------------------------------------------------------ commands

# targets ARGS...: the server names meant (all of them for none or "all").
targets() {
  local t out=()
  [ $# -gt 0 ] || set -- all
  for t in "$@"; do
    case $t in
      all) out+=("${SERVERS[@]}") ;;
      cassandra|vm|prom|cassandra-tls) out+=("$t") ;;
      *) die "unknown server '$t': want all, cassandra, vm, prom or cassandra-tls" ;;
    esac
  done
  printf '%s\n' "${out[@]}" | awk '!seen[$0]++'
}

install_common() {
  need curl curl
  need openssl openssl # certs.sh, for cassandra-tls and the TLS tests
}

cmd_install() {
  local t
  install_common
  for t in "$@"; do "${t}_install"; done
  if printf '%s\n' "$@" | grep -qx cassandra; then build_cqlping; fi
}

cmd_start() {
  local t p t0=$SECONDS pending=()
  install_common
  if printf '%s\n' "$@" | grep -qE '^cassandra(-tls)?$'; then build_cqlping; fi
  # Launch everything first, then wait: the quick servers come up while the
  # JVM boots.
  for t in "$@"; do
    if running "$t"; then
      if "${t}_ready"; then
        say "$t already up (pid $(pid_of "$t"))"
      else
        say "$t running (pid $(pid_of "$t")) but not answering yet; waiting"
        pending+=("$t")
      fi
      continue
    fi
    "${t}_install"
    for p in $("${t}_ports"); do
      port_taken "$p" && die "$t: port 127.0.0.1:$p is already in use by a process this stack did not start (STACK_DIR=$STACK_DIR)"
    done
    "${t}_launch"
    pending+=("$t")
  done
  for t in "${pending[@]}"; do
    case $t in
      cassandra|cassandra-tls) wait_ready "$t" "$CASSANDRA_READY_TIMEOUT" ;;
      *) wait_ready "$t" 60 ;;
    esac
    say "$t ready (pid $(pid_of "$t"), $("${t}_addr")) after $((SECONDS - t0))s"
  done
  [ ${#pending[@]} -eq 0 ] || say "started ${pending[*]} in $((SECONDS - t0))s"
}

cmd_stop() {
  local t
  for t in "$@"; do stop_server "$t"; done
}

cmd_status() {
  local t pid state rc=0
  for t in "$@"; do
    pid=$(pid_of "$t")
    if [ -n "$pid" ] && "${t}_ready"; then
      state=up
    elif [ -n "$pid" ]; then
      state="down (process alive, not answering)"; rc=1
    else
      state=down; pid=-; rc=1
    fi
    printf '%-10s pid %-8s %-24s %s\n' "$t" "$pid" "$("${t}_addr")" "$state"
  done
  return $rc
}

cmd_check() {
  local t
  for t in "$@"; do
    "${t}_ready" || die "$t is not up; run: stack.sh start $t"
    case $t in
      cassandra)
        "$BIN/cqlping" -lwt -hosts "$(cassandra_addr)" -timeout 30s ;;
      vm)
        # A back-dated sample must be queryable right after the import.
        local ts=$(( $(date +%s) - 120 )) metric="stack_check_$RANDOM"
        curl -fsS --max-time 5 --data-binary "$metric{src=\"stack\"} 42 ${ts}000" "$(vm_addr)/api/v1/import/prometheus"
        curl -fsS --max-time 5 -o /dev/null "$(vm_addr)/internal/force_flush" || true
        curl -fsS --max-time 5 "$(vm_addr)/api/v1/query?query=$metric&time=$ts" | grep -q '"42"' ||
          die "vm: imported sample $metric not returned by a query"
        echo "victoria-metrics: import then query ok ($metric at now-120s)" ;;
      prom)
        curl -fsS --max-time 5 "$(prom_addr)/api/v1/status/config" | grep -q 'out_of_order_time_window: 2h' ||
          die "prom: out_of_order_time_window not in the loaded config"
        curl -fsS --max-time 5 "$(prom_addr)/api/v1/query?query=vector(1)" | grep -q '"success"' ||
          die "prom: query failed"
        echo "prometheus: query ok, out_of_order_time_window 2h loaded, remote-write receiver at $(prom_addr)/api/v1/write" ;;
    esac
  done
}

cmd_env() {
  echo "export TEST_CASSANDRA_HOSTS=$(cassandra_addr)"
  echo "export TEST_VM_URL=$(vm_addr)"
  echo "export TEST_PROM_URL=$(prom_addr)"
}

cmd_nodetool() {
  [ -n "$(cassandra_installed)" ] || die "cassandra is not installed"
  "$(java_bin)" "${CASSANDRA_JVM17[@]}" -cp "$CDIR/conf:$CDIR/lib/*" \
    -Dlogback.configurationFile="file://$CDIR/conf/logback.xml" \
    org.apache.cassandra.tools.NodeTool -h 127.0.0.1 -p "$CASSANDRA_JMX_PORT" "$@"
}

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

main() {
  local cmd=${1:-}
  [ $# -eq 0 ] || shift
  local sel=()
  case $cmd in
    install|start|stop|restart|status|check)
      mapfile -t sel < <(targets "$@")
      [ ${#sel[@]} -gt 0 ] || exit 1 ;;
  esac
  case $cmd in
    install|start|stop|restart)
      # One changer at a time: helpers and test runs share the stack, and two
      # concurrent starts would launch two JVMs on the same data directory.
      mkdir -p "$RUN"
      exec 9> "$RUN/.lock"
      if ! flock -n 9; then
        say "waiting for another stack.sh $cmd (lock $RUN/.lock)"
        flock -w 600 9 || die "another stack.sh held $RUN/.lock for 10 minutes"
      fi ;;
  esac
  case $cmd in
    install) cmd_install "${sel[@]}" ;;
    start) cmd_start "${sel[@]}" ;;
    stop) cmd_stop "${sel[@]}" ;;
    restart) cmd_stop "${sel[@]}"; cmd_start "${sel[@]}" ;;
    status) cmd_status "${sel[@]}" ;;
    check) cmd_check "${sel[@]}" ;;
    logs)
      [ $# -ge 1 ] || die "usage: stack.sh logs cassandra|vm|prom|maven [LINES]"
      [ -f "$LOGS/$1.log" ] || die "no log $LOGS/$1.log"
      tail -n "${2:-100}" "$LOGS/$1.log" ;;
    env) cmd_env ;;
    nodetool) cmd_nodetool "$@" ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"

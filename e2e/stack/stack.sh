#!/usr/bin/env bash
# The local stack: real Cassandra (jars from Maven Central on the machine's
# JDK 17), VictoriaMetrics and Prometheus (Debian packages), all on
# 127.0.0.1. Idempotent: installs only what is missing, starts only what is
# down, stops by PID.
#
#   stack.sh install|start|stop|restart|status [all|cassandra|vm|prom ...]
#   stack.sh logs cassandra|vm|prom
#   stack.sh env            export lines for the test variables
#
# Settings (environment): STACK_DIR (default <repo>/.cache), CASSANDRA_VERSION
# (5.0.6), CASSANDRA_PORT (9042), CASSANDRA_STORAGE_PORT (7000),
# CASSANDRA_HEAP (512m), VM_PORT (8428), PROM_PORT (9090), SIM_ADDR
# (127.0.0.1:9401, the simulator both TSDBs scrape).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
STACK_DIR=${STACK_DIR:-$REPO/.cache}
CASSANDRA_VERSION=${CASSANDRA_VERSION:-5.0.6}
CASSANDRA_PORT=${CASSANDRA_PORT:-9042}
CASSANDRA_STORAGE_PORT=${CASSANDRA_STORAGE_PORT:-7000}
CASSANDRA_HEAP=${CASSANDRA_HEAP:-512m}
VM_PORT=${VM_PORT:-8428}
PROM_PORT=${PROM_PORT:-9090}
SIM_ADDR=${SIM_ADDR:-127.0.0.1:9401}

RUN=$STACK_DIR/run
LOGS=$STACK_DIR/logs
CDIR=$STACK_DIR/cassandra

say() { printf '[stack] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- helpers

apt_install() { # apt_install PKG... : installs the packages that are missing
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    die "apt-get install ${missing[*]} failed"
}

pidfile() { echo "$RUN/$1.pid"; }

running() { # running NAME: the recorded PID is alive
  local f; f=$(pidfile "$1")
  [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null
}

stop_pid() { # stop_pid NAME: TERM, wait up to 30 s, then KILL
  local f pid; f=$(pidfile "$1")
  if ! running "$1"; then rm -f "$f"; say "$1 not running"; return 0; fi
  pid=$(cat "$f")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then say "$1 ($pid) ignored TERM; killing"; kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$f"
  say "$1 stopped (pid $pid)"
}

launch() { # launch NAME CMD...: start detached, record the PID
  mkdir -p "$RUN" "$LOGS"
  setsid nohup "${@:2}" >>"$LOGS/$1.log" 2>&1 < /dev/null &
  echo $! > "$(pidfile "$1")"
}

wait_until() { # wait_until NAME SECONDS CHECK...
  local name=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  while ! "$@" >/dev/null 2>&1; do
    if ! running "$name"; then
      say "$name exited during start-up; last log lines:"; tail -n 40 "$LOGS/$name.log" >&2 || true; exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      say "$name not ready after ${secs}s; last log lines:"; tail -n 40 "$LOGS/$name.log" >&2 || true; exit 1
    fi
    sleep 0.5
  done
}

http_ok() { curl -fsS -o /dev/null --max-time 2 "$1"; }

# cql_answers: a CQL v4 OPTIONS frame must get a SUPPORTED frame back, which
# proves the native transport (not just the TCP port) is serving.
cql_answers() {
  exec 3<>"/dev/tcp/127.0.0.1/$CASSANDRA_PORT" || return 1
  printf '\x04\x00\x00\x00\x05\x00\x00\x00\x00' >&3
  local reply
  reply=$(timeout 3 head -c 5 <&3 | od -An -tx1 | tr -d ' \n')
  exec 3<&- 3>&-
  [ "$reply" = "8400000006" ]
}

# ---------------------------------------------------------------- cassandra

cassandra_install() {
  command -v java >/dev/null 2>&1 || apt_install openjdk-17-jre-headless
  local marker=$CDIR/lib/.complete-$CASSANDRA_VERSION
  if [ -f "$marker" ]; then return 0; fi
  command -v mvn >/dev/null 2>&1 || apt_install maven
  say "fetching Cassandra $CASSANDRA_VERSION jars from Maven Central"
  rm -rf "$CDIR/lib"; mkdir -p "$CDIR/lib"
  (cd "$HERE/cassandra" && mvn -q -B -Dcassandra.version="$CASSANDRA_VERSION" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$CDIR/lib") ||
    die "could not fetch org.apache.cassandra:cassandra-all:$CASSANDRA_VERSION (try CASSANDRA_VERSION=5.0.5 or 5.0.4)"
  ls "$CDIR/lib"/cassandra-all-*.jar >/dev/null 2>&1 || die "cassandra-all jar missing after download"
  touch "$marker"
}

cassandra_config() {
  mkdir -p "$CDIR/conf" "$CDIR/data"
  sed -e "s#@DIR@#$CDIR#g" -e "s#@CQL_PORT@#$CASSANDRA_PORT#g" -e "s#@STORAGE_PORT@#$CASSANDRA_STORAGE_PORT#g" \
    "$HERE/cassandra/cassandra.yaml.tmpl" > "$CDIR/conf/cassandra.yaml"
  cp "$HERE/cassandra/logback.xml" "$CDIR/conf/logback.xml"
}

# The --add-exports/--add-opens flags are those of Cassandra's own
# conf/jvm17-server.options; without them JDK 17 refuses its internals.
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
)

cassandra_start() {
  if running cassandra && cql_answers; then say "cassandra already up (pid $(cat "$(pidfile cassandra)"))"; return 0; fi
  running cassandra || {
    cassandra_install
    cassandra_config
    say "starting cassandra $CASSANDRA_VERSION on 127.0.0.1:$CASSANDRA_PORT (heap $CASSANDRA_HEAP)"
    launch cassandra java -Xms"$CASSANDRA_HEAP" -Xmx"$CASSANDRA_HEAP" -Xss512k \
      -XX:+UseG1GC -XX:MaxGCPauseMillis=300 -XX:+HeapDumpOnOutOfMemoryError -XX:HeapDumpPath="$CDIR" \
      -XX:ActiveProcessorCount=2 -XX:MaxDirectMemorySize=256m \
      "${CASSANDRA_JVM17[@]}" \
      -Dcassandra-foreground=yes \
      -Dcassandra.config="file://$CDIR/conf/cassandra.yaml" \
      -Dcassandra.storagedir="$CDIR/data" \
      -Dcassandra.logdir="$LOGS" \
      -Dlogback.configurationFile="file://$CDIR/conf/logback.xml" \
      -Dcassandra.skip_wait_for_gossip_to_settle=0 \
      -Dcassandra.ring_delay_ms=0 \
      -Dcassandra.join_ring=true \
      -Dcassandra.jmx.local.port=7199 \
      -Dcassandra.superuser_setup_delay_ms=0 \
      -cp "$CDIR/conf:$CDIR/lib/*" org.apache.cassandra.service.CassandraDaemon
  }
  wait_until cassandra 240 cql_answers
  say "cassandra ready"
}

cassandra_status() { running cassandra && cql_answers; }

# ---------------------------------------------------------------- victoria-metrics

vm_install() { command -v victoria-metrics >/dev/null 2>&1 || apt_install victoria-metrics; }

vm_start() {
  if running vm && http_ok "http://127.0.0.1:$VM_PORT/health"; then say "victoria-metrics already up"; return 0; fi
  running vm || {
    vm_install
    mkdir -p "$STACK_DIR/vm/data"
    sed -e "s#@SIM_ADDR@#$SIM_ADDR#g" "$HERE/scrape.yml" > "$STACK_DIR/vm/scrape.yml"
    say "starting victoria-metrics on 127.0.0.1:$VM_PORT"
    # maxQueryLen: a bucket's batched selector lists its version ids, which
    # exceeds VictoriaMetrics' 16 KiB default for large buckets.
    # latencyOffset/cacheTimestampOffset 0: data imported by tests is
    # queryable at once instead of 30 s later.
    launch vm victoria-metrics -httpListenAddr="127.0.0.1:$VM_PORT" -storageDataPath="$STACK_DIR/vm/data" \
      -retentionPeriod=7d -promscrape.config="$STACK_DIR/vm/scrape.yml" -promscrape.configCheckInterval=5s \
      -search.latencyOffset=0s -search.cacheTimestampOffset=0s -search.maxQueryLen=4MB \
      -memory.allowedPercent=20 -loggerLevel=WARN
  }
  wait_until vm 60 http_ok "http://127.0.0.1:$VM_PORT/health"
  say "victoria-metrics ready"
}

vm_status() { running vm && http_ok "http://127.0.0.1:$VM_PORT/health"; }

# ---------------------------------------------------------------- prometheus

prom_install() { command -v prometheus >/dev/null 2>&1 || apt_install prometheus; }

prom_start() {
  if running prom && http_ok "http://127.0.0.1:$PROM_PORT/-/ready"; then say "prometheus already up"; return 0; fi
  running prom || {
    prom_install
    mkdir -p "$STACK_DIR/prom/data"
    sed -e "s#@SIM_ADDR@#$SIM_ADDR#g" "$HERE/prometheus.yml" > "$STACK_DIR/prom/prometheus.yml"
    say "starting prometheus on 127.0.0.1:$PROM_PORT"
    launch prom prometheus --config.file="$STACK_DIR/prom/prometheus.yml" --storage.tsdb.path="$STACK_DIR/prom/data" \
      --web.listen-address="127.0.0.1:$PROM_PORT" --web.enable-remote-write-receiver --web.enable-admin-api \
      --storage.tsdb.retention.time=2d --log.level=warn
  }
  wait_until prom 60 http_ok "http://127.0.0.1:$PROM_PORT/-/ready"
  say "prometheus ready"
}

prom_status() { running prom && http_ok "http://127.0.0.1:$PROM_PORT/-/ready"; }

# ---------------------------------------------------------------- commands

addr() {
  case $1 in
    cassandra) echo "127.0.0.1:$CASSANDRA_PORT" ;;
    vm) echo "http://127.0.0.1:$VM_PORT" ;;
    prom) echo "http://127.0.0.1:$PROM_PORT" ;;
  esac
}

targets() {
  local out=()
  [ $# -eq 0 ] && set -- all
  for t in "$@"; do
    case $t in
      all) out+=(cassandra vm prom) ;;
      cassandra|vm|prom) out+=("$t") ;;
      *) die "unknown server '$t': want all, cassandra, vm or prom" ;;
    esac
  done
  echo "${out[@]}"
}

cmd=${1:-}; shift || true
case $cmd in
  install) for t in $(targets "$@"); do "${t}_install"; done ;;
  start)
    t0=$SECONDS
    # Start the JVM first so the quick servers come up while it boots.
    for t in $(targets "$@"); do
      [ "$t" = cassandra ] && { ( cassandra_start ) & cpid=$!; }
    done
    for t in $(targets "$@"); do [ "$t" != cassandra ] && "${t}_start"; done
    [ -n "${cpid:-}" ] && { wait "$cpid" || exit 1; }
    say "stack ready in $((SECONDS - t0))s"
    ;;
  stop) for t in $(targets "$@"); do stop_pid "$t"; done ;;
  restart) "$0" stop "$@"; "$0" start "$@" ;;
  status)
    rc=0
    for t in $(targets "$@"); do
      if "${t}_status"; then
        printf '%-10s up    pid %-8s %s\n' "$t" "$(cat "$(pidfile "$t")")" "$(addr "$t")"
      else
        printf '%-10s down  %-12s %s\n' "$t" "" "$(addr "$t")"; rc=1
      fi
    done
    exit $rc
    ;;
  logs) [ $# -eq 1 ] || die "usage: stack.sh logs cassandra|vm|prom"; tail -n 100 "$LOGS/$1.log" ;;
  env)
    echo "export TEST_CASSANDRA_HOSTS=127.0.0.1:$CASSANDRA_PORT"
    echo "export TEST_VM_URL=http://127.0.0.1:$VM_PORT"
    echo "export TEST_PROM_URL=http://127.0.0.1:$PROM_PORT"
    ;;
  *) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac

# Sourced by the scripts that run servers in the background and stop them
# by PID (e2e/stack/stack.sh, e2e/kube/kube.sh).

# procs_pid PIDFILE MARK: the PID recorded in PIDFILE if that process is
# alive, not a zombie, and its command line contains MARK (the caller's
# state directory); otherwise nothing, so a stale file left by a crash or a
# PID reused by another process never gets a signal.
#
# A process in the middle of an exec has an empty command line for a
# moment (the new image's arguments are not set up yet), and a server
# launched by procs_launch execs several times (setsid, nohup, the
# server). So an empty one is read again, for up to a second, before the
# process is judged: read once, it made kube.sh stop a forwarder that was
# starting as one that had exited.
procs_pid() {
  local pid cmd i
  [ -f "$1" ] || return 0
  pid=$(cat "$1")
  [ -n "$pid" ] || return 0
  for i in $(seq 1 50); do
    [ -r "/proc/$pid/cmdline" ] || return 0
    grep -q 'State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null && return 0
    cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null) || return 0
    [ -z "$cmd" ] || break
    sleep 0.02
  done
  case $cmd in *"$2"*) echo "$pid" ;; esac
}

# procs_launch PIDFILE LOG NAME CMD...: starts CMD detached from this shell
# (own session, no terminal), appending to LOG under a header naming NAME,
# and records its PID in PIDFILE.
#
# Every descriptor above stderr is closed first: a server must not inherit
# a lock its caller holds. Started as `flock -x /tmp/stack.lock stack.sh
# start`, a server kept flock's descriptor open and so held the lock for
# its whole life, blocking every test run that waits for that lock.
procs_launch() {
  local pidfile=$1 log=$2 name=$3
  shift 3
  mkdir -p "$(dirname "$pidfile")" "$(dirname "$log")"
  printf '\n===== %s: starting %s\n' "$(date -Is)" "$name" >> "$log"
  (
    for fd in /proc/self/fd/*; do
      fd=${fd##*/}
      if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    exec setsid nohup "$@" >> "$log" 2>&1 < /dev/null
  ) &
  local pid=$! i
  echo "$pid" > "$pidfile"
  # Until the subshell has closed its descriptors and exec'd, its command
  # line is this script's, which procs_pid does not recognise: a caller
  # that looked at once took a server still starting for one that had
  # exited (CI on 2026-12-01: kube.sh's wait_for found the forwarder's
  # ready file missing and the forwarder "not running", and stopped it
  # running). So return once the command line is the server's (it names
  # CMD: setsid, nohup and CMD exec in turn in one process) or the
  # process is gone, after 5 s at the most.
  for i in $(seq 1 250); do
    [ -r "/proc/$pid/cmdline" ] || break
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$1" && break
    sleep 0.02
  done
}

# procs_wait NAME SECONDS INTERVAL LINES CHECK...: runs CHECK every
# INTERVAL seconds until it succeeds. When NAME has exited (the caller's
# `running NAME`) or SECONDS have passed, it says so (the caller's `say`),
# prints the last LINES lines of NAME's log (the caller's `logfile NAME`)
# and fails. CHECK's output is the caller's to keep or drop (procs_quiet).
procs_wait() {
  local name=$1 secs=$2 interval=$3 lines=$4 deadline=$((SECONDS + $2))
  shift 4
  until "$@"; do
    if ! running "$name"; then
      say "$name exited during start-up; last lines of $(logfile "$name"):"
      tail -n "$lines" "$(logfile "$name")" >&2 || true
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      say "$name not ready after ${secs}s; last lines of $(logfile "$name"):"
      tail -n "$lines" "$(logfile "$name")" >&2 || true
      return 1
    fi
    sleep "$interval"
  done
}

# procs_quiet CMD...: CMD with its output dropped, for a readiness check
# whose failures until the server is up are expected noise.
procs_quiet() { "$@" >/dev/null 2>&1; }

package harness

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// procsScript launches five servers with e2e/procs.sh from a shell holding
// a few hundred open descriptors (a subshell closes each before exec'ing
// the server) and asks procs_pid for each at once, as kube.sh's wait_for
// and stack.sh's wait_ready do when a server is not ready yet. The mark
// procs_pid looks for is in the server's command line only (its path),
// not in the launching shell's.
const procsScript = `
set -e
source "$PROCS"
cp "$(command -v sleep)" "$DIR/fakeserver"
for fd in $(seq 10 400); do eval "exec $fd</dev/null"; done
for i in 1 2 3 4 5; do
  procs_launch "$DIR/p$i.pid" "$DIR/p$i.log" "p$i" "$DIR/fakeserver" 30
  pid=$(procs_pid "$DIR/p$i.pid" "$DIR/fakeserver")
  [ -n "$pid" ] || { echo "server $i not found right after procs_launch returned"; bad=1; }
done
for i in 1 2 3 4 5; do kill "$(cat "$DIR/p$i.pid")" 2>/dev/null || true; done
[ -z "$bad" ]
`

// TestProcsLaunchReturnsOnceTheServerRuns: procs_pid finds a server right
// after procs_launch returns. It returned before the subshell had exec'd
// the server, and a caller that looked at once took the server for one
// that had exited: CI on 2026-12-01 stopped kube.sh's forwarder, which
// was running, as "exited during start-up".
func TestProcsLaunchReturnsOnceTheServerRuns(t *testing.T) {
	runProcsScript(t, procsScript)
}

// runProcsScript runs script in bash with PROCS naming e2e/procs.sh and
// DIR a directory of the test's own, logs its output and fails the test
// when it fails.
func runProcsScript(t *testing.T, script string) {
	t.Helper()
	procs, err := filepath.Abs("../procs.sh")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-c", script)
	cmd.Env = append(os.Environ(), "PROCS="+procs, "DIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatal(err)
	}
}

// execScript launches a server that replaces itself by exec 1,000 times (a
// shell re-running its own script, the mark in its arguments throughout,
// the last one too) and asks procs_pid for it again and again meanwhile. An exec in progress
// shows an empty command line for a moment; procs_pid read that as "not
// our process", and kube.sh's wait_for stopped with "forward exited during
// start-up" while the forwarder ran (make knative-up, 2026-12-02: setsid,
// nohup and the forwarder exec in turn in the launched process).
const execScript = `
set -e
source "$PROCS"
cat > "$DIR/reexec.sh" <<'SH'
n=$1
if [ "$n" -gt 0 ]; then exec /bin/sh "$0" $((n - 1)); fi
exec /bin/sh -c 'sleep 30' "$0"
SH
procs_launch "$DIR/p.pid" "$DIR/p.log" p /bin/sh "$DIR/reexec.sh" 1000
pid=$(cat "$DIR/p.pid")
misses=0 asks=0
until tr '\0' ' ' < /proc/$pid/cmdline 2>/dev/null | grep -q 'sleep 30' || [ $asks -ge 5000 ]; do
  asks=$((asks + 1))
  [ -n "$(procs_pid "$DIR/p.pid" "$DIR/reexec.sh")" ] || misses=$((misses + 1))
done
kill -- -"$pid" 2>/dev/null || true # its session: the sleep too
echo "asked $asks times while it exec'd, $misses answers said it was gone"
[ "$misses" -eq 0 ]
`

// TestProcsPidSeesAServerThroughItsExecs: a server in the middle of an
// exec is still the server.
func TestProcsPidSeesAServerThroughItsExecs(t *testing.T) {
	runProcsScript(t, execScript)
}

// waitScript checks procs_wait, the start-up wait stack.sh and kube.sh
// share: it returns once the check passes, and fails naming the server
// and printing its log when the server exits first or the time runs out.
const waitScript = `
source "$PROCS"
say() { echo "[test] $*"; }
logfile() { echo "$DIR/$1.log"; }
running() { [ -n "$(procs_pid "$DIR/$1.pid" "$DIR")" ]; }
cp "$(command -v sleep)" "$DIR/server"

procs_launch "$DIR/up.pid" "$DIR/up.log" up "$DIR/server" 30
( sleep 0.3; touch "$DIR/up.ready" ) &
procs_wait up 10 0.1 5 test -f "$DIR/up.ready" || { echo "FAIL: a server that became ready was not waited for"; exit 1; }
kill "$(cat "$DIR/up.pid")"

procs_launch "$DIR/gone.pid" "$DIR/gone.log" gone /bin/sh -c 'echo dying words; exit 3' "$DIR/server"
out=$(procs_wait gone 10 0.1 5 test -f "$DIR/never" 2>&1) && { echo "FAIL: a server that exited was waited for"; exit 1; }
case $out in *"gone exited during start-up"*"dying words"*) ;; *) echo "FAIL: exit not reported: $out"; exit 1 ;; esac

procs_launch "$DIR/slow.pid" "$DIR/slow.log" slow "$DIR/server" 30
out=$(procs_wait slow 1 0.1 5 test -f "$DIR/never" 2>&1) && { echo "FAIL: waited past the deadline"; exit 1; }
kill "$(cat "$DIR/slow.pid")"
case $out in *"slow not ready after 1s"*) ;; *) echo "FAIL: timeout not reported: $out"; exit 1 ;; esac
echo ok
`

// TestProcsWaitReportsReadyExitedAndTimedOut: the one wait loop every
// start-up script uses.
func TestProcsWaitReportsReadyExitedAndTimedOut(t *testing.T) {
	runProcsScript(t, waitScript)
}
